"""The lab's splits: MultiJail ids into train and held-out evaluation, seeded and stratified by category, and the
proof that no training example overlaps an evaluation prompt (planted overlaps are caught)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from polysafe.data.multijail import load_multijail
from polysafe.lab.generalization import drop_overlaps
from polysafe.lab.data import Example, mix, multilingual_safety, whole_sentences
from polysafe.lab.overlap import OverlapError, Text, check_no_overlap, find_overlaps
from polysafe.lab.splits import pick_stratified, split_ids
from polysafe.types import Prompt


@pytest.fixture(scope="module")
def multijail(shared_data):
    return load_multijail(shared_data / "multijail" / "MultiJail.csv")


def test_split_is_disjoint_complete_deterministic_and_stratified(multijail):
    split = split_ids(multijail, eval_share=0.5, seed=0)
    ids = {p.id for p in multijail}
    assert len(ids) == 315
    assert set(split.train).isdisjoint(split.evaluation)
    assert set(split.train) | set(split.evaluation) == ids
    assert len(split.evaluation) == round(0.5 * 315)
    assert split == split_ids(multijail, eval_share=0.5, seed=0)  # the same seed, the same split
    assert split.evaluation != split_ids(multijail, eval_share=0.5, seed=1).evaluation
    # every category is cut at the share, to within one id (largest remainder)
    total = Counter(split.categories.values())
    held = Counter(split.categories[i] for i in split.evaluation)
    for category, n in total.items():
        assert abs(held[category] - 0.5 * n) < 1, category
    third = split_ids(multijail, eval_share=0.3, seed=0)
    assert len(third.evaluation) == round(0.3 * 315)


def test_split_does_not_depend_on_row_or_language_order(multijail):
    shuffled = list(multijail)
    random.Random(5).shuffle(shuffled)
    assert split_ids(shuffled, seed=3) == split_ids(multijail, seed=3)


def test_stratified_pick_spreads_over_categories_in_a_fixed_order(multijail):
    split = split_ids(multijail, seed=0)
    picked = pick_stratified(split.evaluation, split.categories, 18, seed=0)
    assert len(picked) == len(set(picked)) == 18 and set(picked) <= set(split.evaluation)
    sizes = Counter(split.categories[i] for i in split.evaluation)
    taken = Counter(split.categories[i] for i in picked)
    for category, size in sizes.items():  # each category in proportion, to within one id
        assert abs(taken[category] - 18 * size / len(split.evaluation)) < 1, category
    assert picked == pick_stratified(split.evaluation, split.categories, 18, seed=0)
    assert picked == sorted(picked, key=int)
    assert pick_stratified(split.evaluation, split.categories, 10_000, seed=0) == sorted(split.evaluation, key=int)


def test_bad_share_is_refused(multijail):
    from polysafe.errors import InputError

    with pytest.raises(InputError, match="eval-share"):
        split_ids(multijail, eval_share=1.0)


def _evaluation(multijail, split):
    held = set(split.evaluation)
    return [Text("multijail", f"{p.id}/{p.language}", p.text, p.id, p.language) for p in multijail if p.id in held]


def test_real_training_data_does_not_overlap_and_planted_overlaps_are_caught(multijail):
    split = split_ids(multijail, seed=0)
    evaluation = _evaluation(multijail, split)
    everything = multilingual_safety(multijail, split.train)
    assert len(everything) == 10 * len(split.train)
    # MultiJail itself repeats some translations across ids (4 and 11 are the same request in ar and sw): those
    # training rows are dropped, and what is left passes the check.
    train, dropped = drop_overlaps(everything, evaluation)
    assert 0 < dropped < 20 and len(train) == len(everything) - dropped
    check_no_overlap([e.text() for e in train], evaluation)
    with pytest.raises(OverlapError):
        check_no_overlap([e.text() for e in everything], evaluation)

    held = next(p for p in multijail if p.id == split.evaluation[7] and p.language == "bn")
    sw = next(p for p in multijail if p.id == split.evaluation[9] and p.language == "sw")
    planted = [
        Example("multijail", "leak-id", "a different text altogether", "no", "bn", held.id),  # an evaluation id
        Example("bianchi2024", "leak-exact", "  " + held.text.upper() + " ", "no"),  # the same text, another case
        Example("bianchi2024", "leak-near", sw.text.replace("?", ".") + " tafadhali", "no", "sw"),  # a near duplicate
    ]
    found = find_overlaps([e.text() for e in train + planted], evaluation)
    assert [(o.kind, o.train.key) for o in found] == [("id", "leak-id"), ("exact", "leak-exact"), ("near", "leak-near")]
    assert found[2].evaluation.id == sw.id and found[2].similarity >= 0.8
    with pytest.raises(OverlapError, match="3 training example"):
        check_no_overlap([e.text() for e in train + planted], evaluation)


def test_prefix_filter_finds_what_a_brute_force_comparison_finds():
    from polysafe.defenses.selfdefense.checks import char_ngrams, jaccard

    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma", "theta", "zeta", "iota"]
    evaluation = [Text("e", str(i), " ".join(rng.choice(words) for _ in range(8))) for i in range(60)]
    train = []
    for i in range(120):  # copies with a word or two changed, and fresh sentences
        base = evaluation[rng.randrange(60)].text.split() if i % 2 else [rng.choice(words) for _ in range(8)]
        for _ in range(rng.randrange(3)):
            base[rng.randrange(8)] = rng.choice(words)
        train.append(Text("t", str(i), " ".join(base)))
    found = {o.train.key for o in find_overlaps(train, evaluation) if o.kind == "near"}
    exact = {o.train.key for o in find_overlaps(train, evaluation) if o.kind == "exact"}
    brute = {t.key for t in train if t.key not in exact
             and max(jaccard(char_ngrams(t.text), char_ngrams(e.text)) for e in evaluation) >= 0.8}
    assert found == brute and found


def test_mix_repeats_helpful_pairs_to_the_share_and_trims_cut_answers():
    safety = [Example("s", str(i), f"bad {i}", "no") for i in range(6)]
    helpful = [Example("h", str(i), f"good {i}", "yes") for i in range(4)]
    mixed = mix(safety, helpful, 0.5)
    assert len(mixed) == 12 and [e.key for e in mixed[6:]] == ["0", "1", "2", "3", "0", "1"]
    assert len(mix(safety, helpful, 0.25)) == 8
    assert whole_sentences("One. Two! Three is cut") == "One. Two!"
    assert whole_sentences("no sentence end") == ""
    assert whole_sentences("版本。然后") == "版本。"


def test_multilingual_pairs_answer_in_the_prompts_language():
    from polysafe.data.textchecks import is_language
    from polysafe.data.refusal_phrases import opens_with_refusal
    from polysafe.lab.answers import REFUSALS
    from polysafe.languages import MULTIJAIL_LANGUAGES

    assert set(REFUSALS) == set(MULTIJAIL_LANGUAGES)
    for language, answer in REFUSALS.items():
        assert is_language(answer, language), language
        assert opens_with_refusal(answer), language
    prompts = [Prompt("1", "bad", "en"), Prompt("1", "mbaya", "sw"), Prompt("2", "other", "en")]
    pairs = multilingual_safety(prompts, ["1"])
    assert [(e.language, e.answer) for e in pairs] == [("en", REFUSALS["en"]), ("sw", REFUSALS["sw"])]
    assert all(e.id == "1" for e in pairs)


def test_safety_pairs_from_a_url_are_downloaded_once(tmp_path):
    import http.server
    import json
    import threading

    from polysafe.errors import BackendError
    from polysafe.lab.data import english_safety, fetch_once

    hits = []
    body = json.dumps([{"instruction": f"Do bad thing {i}", "input": "", "output": "I can't help with that."}
                       for i in range(5)]).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            if self.path.endswith("missing.json"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/data/training/safety_only_data_Instructions.json"
        first = fetch_once(url, tmp_path)
        assert fetch_once(url, tmp_path) == first and len(hits) == 1  # the second call reads the saved copy
        pairs = english_safety(first, 3, seed=0)
        assert len(pairs) == 3 and all(p.answer == "I can't help with that." for p in pairs)
        assert [int(p.key) for p in pairs] == sorted(int(p.key) for p in pairs)
        assert fetch_once(str(tmp_path / "local.json"), tmp_path) == str(tmp_path / "local.json")
        with pytest.raises(BackendError, match="cannot download"):
            fetch_once(url.replace("safety_only_data_Instructions", "missing"), tmp_path)
    finally:
        server.shutdown()
