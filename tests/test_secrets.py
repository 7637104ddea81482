"""Secrets stay secret: the API key, bearer tokens and URL passwords never reach the store, a report or stderr;
base URLs are validated before anything is sent or stored; a missing key stops up front."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import Reply, last_user_text

from polysafe.engine.store import Store
from polysafe.errors import InputError
from polysafe.models import ModelOptions, load_model
from polysafe.models.endpoints import needs_api_key, parse_base_urls, validate_base_url
from polysafe.report.base import load_report_input, render
from polysafe.secrets import redact, remember

ROOT = Path(__file__).resolve().parent.parent
CANARY_KEY = "sk-canary-5b1e0c9d7a"
CANARY_PASSWORD = "hunter2canarypw"


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI in a subprocess, with no OpenAI variables but those given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    return subprocess.run([sys.executable, "-m", "polysafe.cli", *args], capture_output=True, text=True,
                          env={**clean, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=120)


def files_containing(folder: Path, secret: str) -> list[Path]:
    return [f for f in folder.rglob("*") if f.is_file() and secret.encode() in f.read_bytes()]


# -- redact --------------------------------------------------------------------------------------------------
def test_redact_removes_keys_tokens_and_url_passwords_and_keeps_the_rest():
    remember("sk-registered-0042")
    text = ("HTTP 401: invalid key sk-registered-0042; header was 'Authorization: Bearer abc.def-123' "
            "from http://alice:s3cret@host:8000/v1 api_key=zzz999 and 300 tokens used")
    out = redact(text, secrets=("given-secret-77",)) + redact("echo given-secret-77", secrets=("given-secret-77",))
    for secret in ("sk-registered-0042", "abc.def-123", "s3cret", "alice", "zzz999", "given-secret-77"):
        assert secret not in out, secret
    assert "HTTP 401" in out and "host:8000/v1" in out and "300 tokens used" in out
    assert redact("the model used 12 tokens; token limit 4096") == "the model used 12 tokens; token limit 4096"


# -- base URLs -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url, canonical", [
    ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/v1"),
    ("HTTPS://API.OpenAI.com:443/v1", "https://api.openai.com/v1"),
    ("http://[::1]:11434/v1", "http://[::1]:11434/v1"),
    ("http://gpu-box.local/v1", "http://gpu-box.local/v1"),
])
def test_valid_base_urls_are_canonical(url, canonical):
    assert validate_base_url(url, "--base-url") == canonical


@pytest.mark.parametrize("url", [
    "localhost:8000/v1", "127.0.0.1:8000", "ftp://host/v1", "http:///v1", "http://host:99999/v1", "http://host:0/v1",
    "http://host:port/v1", "http://ho st/v1", "http://host/v1?key=1", "http://host/v1#x", "http:/host/v1", "",
    "http://host\r\nX-Evil: 1/v1", "http://a..b/v1",
])
def test_invalid_base_urls_are_input_errors_naming_the_source(url):
    with pytest.raises(InputError) as err:
        validate_base_url(url, "--base-url")
    assert "--base-url" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("url", [f"http://bob:{CANARY_PASSWORD}@127.0.0.1:8000/v1", f"https://{CANARY_PASSWORD}@h/v1",
                                 f"bob:{CANARY_PASSWORD}@127.0.0.1:8000/v1"])
def test_a_password_in_a_url_is_refused_without_repeating_it(url):
    with pytest.raises(InputError) as err:
        validate_base_url(url, "$OPENAI_BASE_URL")
    assert CANARY_PASSWORD not in str(err.value) and "$OPENAI_BASE_URL" in str(err.value)


def test_replica_lists_are_validated_one_by_one():
    assert parse_base_urls("http://a:1/v1,http://b:2/v1/,http://a:1/v1", "x") == ("http://a:1/v1", "http://b:2/v1")
    with pytest.raises(InputError):
        parse_base_urls("http://a:1/v1,b:2/v1", "x")


def test_which_endpoints_need_a_key():
    assert needs_api_key("https://api.openai.com/v1") and needs_api_key("https://my-vllm.example.org/v1")
    assert not needs_api_key("http://10.0.0.5:8000/v1") and not needs_api_key("https://localhost:8443/v1")
    assert not needs_api_key("https://127.0.0.1:8443/v1")


def test_every_url_source_is_validated_at_construction(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "localhost:8000/v1")
    with pytest.raises(InputError, match=r"\$OPENAI_BASE_URL"):
        load_model("openai:m")
    with pytest.raises(InputError, match="--base-url"):
        load_model("openai:m", ModelOptions(base_urls=("http://ok:1/v1", "ok:2")))
    with pytest.raises(InputError, match="model spec"):
        load_model("openai:m@localhost:8000/v1")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/")
    assert load_model("openai:m").identity == "openai:m@http://127.0.0.1:9/v1"


def test_a_missing_key_stops_at_construction(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    for spec in ("openai:gpt-4o-mini", "openai:m@https://llm.example.org/v1"):
        with pytest.raises(InputError, match=r"\$OPENAI_API_KEY is not set"):
            load_model(spec)
    assert load_model("openai:m@http://127.0.0.1:9/v1").identity  # local servers need none


# -- end to end: database, reports, stderr -------------------------------------------------------------------
def test_a_token_echoed_by_the_server_reaches_no_file_report_or_stderr(fake_openai, tmp_path):
    def reply(body):
        text = last_user_text(body)
        if text == "echo bearer":
            return Reply(status=401, raw=f'{{"error": "bad header Authorization: Bearer {CANARY_KEY}"}}'.encode())
        if text == "echo key":
            return Reply(status=403, raw=f"key {CANARY_KEY} has no access to this model".encode())
        if text == "echo in answer":
            return f"your key is {CANARY_KEY}"
        return "I'm sorry, I can't help with that."

    server = fake_openai(reply)
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,text\n1,hello\n2,echo bearer\n3,echo key\n4,echo in answer\n")
    db = tmp_path / "results" / "s.db"
    out = cli("eval", "file", "-p", str(prompts), "-m", f"openai:fake@{server.url}", "--db", str(db),
              "--api-key-env", "CANARY_KEY_VAR", "--run-name", "leak", "--max-retries", "0", env={"CANARY_KEY_VAR": CANARY_KEY})
    assert out.returncode == 1, out.stderr  # two items failed
    assert server.headers_seen[0]["Authorization"] == f"Bearer {CANARY_KEY}"  # the key did go where it belongs
    assert "HTTP 401" in out.stderr and CANARY_KEY not in out.stderr + out.stdout
    with Store(db) as store:
        rows = {r.query: r for r in store.results("leak")}
        assert rows["echo bearer"].label == rows["echo key"].label == "error"
        assert "HTTP 403" in rows["echo key"].error
        shown = [render(fmt, load_report_input(store, "leak", tmp_path / "reports")) for fmt in ("md", "json", "html")]
    html_files = list((tmp_path / "reports").rglob("*.html"))
    assert html_files and all(CANARY_KEY not in s for s in shown)
    assert files_containing(tmp_path, CANARY_KEY) == []


@pytest.mark.parametrize("where", ["--base-url", "spec", "env", "judge"])
def test_a_url_password_is_refused_with_exit_2_and_never_shown(fake_openai, tmp_path, where):
    server = fake_openai()
    with_password = server.url.replace("http://", f"http://bob:{CANARY_PASSWORD}@")
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,text\n1,hello\n")
    db = tmp_path / "results" / "s.db"
    model, extra, env = f"openai:fake@{server.url}", [], {}
    if where == "--base-url":
        model, extra = "openai:fake", ["--base-url", with_password]
    elif where == "spec":
        model = f"openai:fake@{with_password}"
    elif where == "env":
        model, env = "openai:fake", {"OPENAI_BASE_URL": with_password}
    else:
        extra = ["--judge", f"llm:openai:fake@{with_password}"]
    out = cli("eval", "file", "-p", str(prompts), "-m", model, "--db", str(db), *extra, env=env)
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "password" in out.stderr
    assert CANARY_PASSWORD not in out.stderr + out.stdout
    assert files_containing(tmp_path, CANARY_PASSWORD) == []
    assert server.received == 0


def test_a_url_without_scheme_exits_2_before_anything_is_stored(tmp_path):
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,text\n1,hello\n")
    db = tmp_path / "results" / "s.db"
    out = cli("eval", "file", "-p", str(prompts), "-m", "openai:fake", "--base-url", "localhost:8000/v1", "--db", str(db))
    assert out.returncode == 2 and "--base-url" in out.stderr and "http://" in out.stderr
    assert not db.exists() or Store(db).list_runs() == []


def test_a_missing_key_exits_2_before_anything_is_stored(tmp_path):
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,text\n1,hello\n")
    db = tmp_path / "results" / "s.db"
    out = cli("eval", "file", "-p", str(prompts), "-m", "openai:gpt-4o-mini", "--db", str(db))
    assert out.returncode == 2 and "OPENAI_API_KEY" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not db.exists() or Store(db).list_runs() == []


# -- each layer on its own (defence in depth) ----------------------------------------------------------------
def test_the_store_redacts_what_a_careless_backend_hands_it(tmp_path):
    from polysafe.types import Completion

    remember("sk-layer-store-31337")
    with Store(tmp_path / "s.db") as store:
        store.put_response("a", "m", {}, Completion.failed("HTTP 401: Authorization: Bearer tok-abc123 rejected"))
        store.put_response("b", "m", {}, Completion("the key is sk-layer-store-31337"))
        got = store.get_responses(["a", "b"])
    assert "tok-abc123" not in got["a"].error and "HTTP 401" in got["a"].error
    assert got["b"].text == "the key is ***"
    assert files_containing(tmp_path, "tok-abc123") == files_containing(tmp_path, "sk-layer-store-31337") == []


def test_the_error_line_redacts_what_any_stage_raises(capsys):
    from polysafe.commands._common import error_line

    error_line(f"unknown model 'opnai' in spec 'opnai:m@http://bob:{CANARY_PASSWORD}@h/v1' (Bearer {CANARY_KEY})")
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model") and CANARY_PASSWORD not in err and CANARY_KEY not in err


def test_the_backend_redacts_the_error_texts_it_builds(fake_openai, monkeypatch):
    import asyncio

    from polysafe.types import GenerationConfig, Message

    monkeypatch.setenv("BACKEND_CANARY", "sk-backend-canary-424242")
    server = fake_openai(lambda body: Reply(status=400, raw=b"bad request from key sk-backend-canary-424242"))
    model = load_model(f"openai:m@{server.url}", ModelOptions(api_key_env="BACKEND_CANARY", max_retries=0))
    (completion,) = asyncio.run(model.generate([(Message("user", "hi"),)], GenerationConfig()))
    assert "HTTP 400" in completion.error and "sk-backend-canary-424242" not in completion.error
