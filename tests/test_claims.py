"""The verdict of a claim over seeds (minires/experiments/claims.py), on constructed values:
each of "holds", "within noise" and "does not hold", the margin, one seed, and the line a
person reads."""
import pytest

from minires.experiments.claims import DOES_NOT_HOLD, HOLDS, WITHIN_NOISE, describe, lower, seeds_from, spread


def test_spread_of_per_seed_values():
    s = spread([0.3, 0.1, 0.2])
    assert s["values"] == [0.3, 0.1, 0.2]  # in seed order
    assert (s["min"], s["max"]) == (0.1, 0.3)
    assert s["mean"] == pytest.approx(0.2) and s["std"] == pytest.approx(0.1)
    assert spread([0.5])["std"] == 0.0


@pytest.mark.parametrize("a, b, verdict", [
    ([0.02, 0.03, 0.025], [0.20, 0.18, 0.22], HOLDS),             # every a below every b
    ([0.015, 0.012, 0.018], [0.0147, 0.016, 0.013], WITHIN_NOISE),  # the ranges overlap
    ([0.10, 0.11, 0.12], [0.02, 0.01, 0.03], DOES_NOT_HOLD),       # every b below every a
    # measured (degradation, laptop): plain-56's seeds spread widely, but every one is above
    # every plain-20 seed; a rule "gap of the means > the larger range" would call it noise
    ([0.0259, 0.0319, 0.0275], [0.1169, 0.4519, 0.3309], HOLDS),
    ([0.10, 0.20], [0.15, 0.35], WITHIN_NOISE),                    # a's 0.20 is above b's 0.15
])
def test_the_three_verdicts(a, b, verdict):
    claim = lower("a is lower than b", "a", a, "b", b)
    assert claim["verdict"] == verdict
    assert claim["margin"] == pytest.approx(min(b) - max(a))
    assert claim["difference"] == pytest.approx(sum(b) / len(b) - sum(a) / len(a))
    assert claim["a"]["values"] == a and claim["b"]["values"] == b and claim["seeds"] == len(a)


def test_ranges_that_touch_are_within_noise():
    assert lower("s", "a", [0.0, 0.5], "b", [0.5, 1.0])["verdict"] == WITHIN_NOISE
    assert lower("s", "a", [0.5, 1.0], "b", [0.0, 0.5])["verdict"] == WITHIN_NOISE


def test_one_seed_has_no_spread_and_says_so():
    claim = lower("a is lower than b", "a", [0.1], "b", [0.2])
    assert claim["verdict"] == HOLDS and claim["seeds"] == 1
    assert "one seed, so no spread was measured" in describe(claim)


def test_describe_gives_the_verdict_the_ranges_and_the_means():
    held = describe(lower("the deeper plain net trains worse", "plain-20", [0.0259, 0.0319, 0.0275],
                          "plain-56", [0.1169, 0.4519, 0.3309]))
    assert held == ("holds: the deeper plain net trains worse: every seed of plain-20 (0.0259-0.0319) "
                    "is below every seed of plain-56 (0.117-0.452); means 0.0284 and 0.3")
    noise = describe(lower("resnet-56 trains better", "resnet-56", [0.015, 0.012, 0.018],
                           "resnet-20", [0.0147, 0.016, 0.013]))
    assert noise.startswith("within noise: resnet-56 trains better: over 3 seeds resnet-56 (0.012-0.018) "
                            "and resnet-20 (0.013-0.016) overlap")
    wrong = describe(lower("s", "a", [0.3, 0.4], "b", [0.1, 0.2]))
    assert wrong.startswith("does not hold: s: every seed of b (0.1-0.2) is below every seed of a (0.3-0.4)")
    assert not any(word in line for line in (held, noise, wrong) for word in ("True", "False"))


def test_bad_seed_counts_are_refused():
    assert seeds_from(4, 3) == [4, 5, 6]
    with pytest.raises(ValueError, match="seeds must be at least 1"):
        seeds_from(0, 0)
    with pytest.raises(ValueError, match="has 2 values"):
        lower("s", "a", [0.1, 0.2], "b", [0.1])
