"""Tests written against mutants that survived mutation testing (tools/mutate.py): each pins a behaviour whose
change no other test noticed."""

from __future__ import annotations

import pytest

from polysafe.keys import content_key
from polysafe.types import GenerationConfig


def test_content_keys_are_stable_across_versions():
    """Stored responses are found by these hashes: any change to how keys are made loses every existing store's
    answers (a rerun would pay for all of them again)."""
    request = {"messages": [{"role": "user", "content": "héllo 北京"}], "temperature": 0.0}
    assert content_key("response", "m", request) == "8357b8eb6d004dc9f9c40f9c51a24cfdf28ae27b148573a0d1707126cae3a886"
    assert content_key("x", GenerationConfig()) == "c9803f28a6c611a9212c60f99d39b4f4330d571a2f9a559ccc4227753ce17542"


def test_content_keys_refuse_what_they_cannot_hash():
    with pytest.raises(TypeError, match="cannot hash object"):
        content_key("x", object())


# -- report/stats.py ---------------------------------------------------------------------------------------------
def test_z_for_inverts_the_two_sided_p_value_also_below_one():
    from polysafe.report.stats import z_for

    assert z_for(0.05) == pytest.approx(1.959963984540054, abs=1e-12)
    assert z_for(0.5) == pytest.approx(0.6744897501960816, abs=1e-12)  # a quantile below 1


@pytest.mark.parametrize("k1, n1, k2, n2, p", [
    (5, 10, 4, 10, 0.6528331696957484),  # not significant: the crossing lies below z = 1
    (1, 20, 17, 20, 7.58294533425417e-08),  # the first rate lower
    (17, 20, 1, 20, 7.58294533425417e-08),  # the same difference the other way round
    (3, 10, 3, 10, 1.0),  # equal rates: exactly 1
])
def test_newcombe_p_values(k1, n1, k2, n2, p):
    from polysafe.report.stats import newcombe_p

    assert newcombe_p(k1, n1, k2, n2) == pytest.approx(p, rel=1e-9, abs=0)


def test_newcombe_p_beyond_the_search_range_is_the_bound():
    from polysafe.report.stats import newcombe_p, two_sided_p

    assert newcombe_p(0, 10**7, 10**7, 10**7) == two_sided_p(40.0)


def test_a_difference_needs_both_sides_and_one_answer_is_enough():
    from polysafe.report.stats import difference

    assert difference(0, 0, 1, 2) is None and difference(1, 2, 0, 0) is None and difference(0, 0, 0, 0) is None
    one = difference(1, 1, 0, 1)
    assert one is not None and one.value == 1.0 and one.p == pytest.approx(0.12023834065689734, rel=1e-9)


def test_an_unknown_correction_is_named():
    from polysafe.report.stats import adjust

    with pytest.raises(ValueError, match="unknown correction 'bonferroni'"):
        adjust([0.1], "bonferroni")
