"""Base URLs of OpenAI-compatible endpoints: validated before anything is sent or stored.

A base URL (from `openai:<model>@<url>[,<url>...]`, `--base-url` or $OPENAI_BASE_URL) must be an absolute
http:// or https:// URL with a host, a port in 1-65535 when one is given, and no query or fragment.
Anything else is an InputError naming where the URL came from: `localhost:8000/v1` (no scheme) is refused
rather than guessed, so the key is never sent to an unintended port.

Credentials inside a URL (`http://user:password@host/v1`) are refused (exit 2), never stripped: the refusal
happens before the URL reaches the model identity, the store, a report or an error line, and the message never
repeats the URL. The API key travels only in `$OPENAI_API_KEY` (or the variable named by `--api-key-env`).

An endpoint needs an API key when it is https on a host that is not loopback (OpenAI and every hosted API);
plain http and loopback endpoints (a local vLLM, llama.cpp server or Ollama) do not, and get `Bearer EMPTY`.
For an https server that takes no key, set the variable to any value (e.g. `EMPTY`).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

from ..errors import InputError

_HOST_NAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f]")
DEFAULT_PORTS = {"http": 80, "https": 443}


def _shown(url: str) -> str:
    """The URL as it may appear in a message: never when it may hold a password."""
    return "the value" if "@" in url else repr(url[:100])


def validate_base_url(url: str, source: str) -> str:
    """The canonical form of a base URL (lower-case scheme and host, no default port, no trailing slash).

    `source` names where the URL came from (`--base-url`, `$OPENAI_BASE_URL`, ...): it leads the error."""
    url = url.strip()
    if not url:
        raise InputError("empty URL", field=source)
    if _UNSAFE.search(url):
        raise InputError(f"{_shown(url)} contains spaces or control characters", field=source)
    parts = urlsplit(url)
    if "@" in parts.netloc or (parts.scheme not in DEFAULT_PORTS and "@" in url):
        raise InputError("a user name or password inside the URL is refused; pass the key in $OPENAI_API_KEY "
                         "(or the variable named by --api-key-env)", field=source)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not url.lower().startswith(f"{scheme}://"):
        raise InputError(f"{_shown(url)} must start with http:// or https:// (e.g. http://127.0.0.1:8000/v1)", field=source)
    host = (parts.hostname or "").lower()
    if not host:
        raise InputError(f"{_shown(url)} has no host", field=source)
    if not _valid_host(host):
        raise InputError(f"{_shown(url)} has an invalid host", field=source)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise InputError(f"{_shown(url)} has a port outside 1-65535", field=source)
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise InputError(f"{_shown(url)} has a query or fragment; give the API root, e.g. https://api.openai.com/v1", field=source)
    shown_host = f"[{host}]" if ":" in host else host
    netloc = shown_host if port in (None, DEFAULT_PORTS[scheme]) else f"{shown_host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def parse_base_urls(value: str, source: str) -> tuple[str, ...]:
    """`url1,url2,...` (replicas of one model) -> validated canonical URLs, duplicates dropped, order kept."""
    urls = [validate_base_url(part, source) for part in value.split(",")]
    return tuple(dict.fromkeys(urls))


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOST_NAME.match(host)) and ".." not in host


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def needs_api_key(url: str) -> bool:
    """https on a non-loopback host: OpenAI and hosted APIs. Local http servers take any key."""
    return urlsplit(url).scheme == "https" and not is_loopback(url)
