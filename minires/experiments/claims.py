"""A paper's claim, judged over several seeds: every seed's value, their spread, and a verdict.

One training run of a small network is one sample: another seed (other initial weights,
another batch order) or another machine (other BLAS rounding, amplified by a thousand SGD
steps) gives other numbers. So every experiment that states a claim runs each network
with several seeds (``seeds_from``) and compares the two networks' *ranges* over the seeds.
A claim is always "a is lower than b" (an error, a drop in accuracy, a distance from 1),
and its verdict is one of

    holds           every seed of a is below every seed of b:  max(a) < min(b)
    does not hold   every seed of b is below every seed of a:  max(b) < min(a)
    within noise    the two ranges overlap: the seeds cannot tell a and b apart

The *margin* is the gap between the two ranges, min(b) - max(a): positive when the claim
holds, and how far the closest seeds are apart. Why this rule: if a and b were really the
same, every ordering of the 2n values would be equally likely, and all n of a's below all
n of b's is one ordering in C(2n, n): for 3 seeds a chance of 1 in 20, for 4 seeds 1 in 70.
A separation that clear is what "holds" asks for. With one seed each, a range is a point,
so the verdict only compares two numbers; it says so.

    claim = lower("the deeper plain net trains worse",
                  "plain-20", [0.026, 0.032, 0.028], "plain-56", [0.117, 0.452, 0.331])
    claim["verdict"]   # 'holds'
    describe(claim)    # 'holds: the deeper plain net trains worse: every seed of plain-20 ...'
"""
import math
import statistics

HOLDS, WITHIN_NOISE, DOES_NOT_HOLD = "holds", "within noise", "does not hold"


def seeds_from(first, count):
    """The seeds of one experiment: ``first``, ``first + 1``, ... (``count`` of them)."""
    if count < 1:
        raise ValueError(f"seeds must be at least 1, got {count}")
    return [first + i for i in range(count)]


def spread(values):
    """Mean, min, max and (sample) standard deviation of per-seed values, and the values."""
    values = [float(v) for v in values]
    finite = all(math.isfinite(v) for v in values)  # a diverged training's loss is infinite: so are mean and std
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "std": (statistics.stdev(values) if finite else math.inf) if len(values) > 1 else 0.0, "values": values}


def lower(statement, a_name, a_values, b_name, b_values):
    """The claim "a is lower than b" over the seeds' values, as a dict: statement, verdict,
    margin (min b - max a), difference (mean b - mean a), seeds, and the spread of each side."""
    a, b = spread(a_values), spread(b_values)
    if len(a["values"]) != len(b["values"]):
        raise ValueError(f"{statement}: {a_name} has {len(a['values'])} values, {b_name} {len(b['values'])}")
    if a["max"] < b["min"]:
        verdict = HOLDS
    elif b["max"] < a["min"]:
        verdict = DOES_NOT_HOLD
    else:
        verdict = WITHIN_NOISE
    return {"statement": statement, "verdict": verdict, "margin": b["min"] - a["max"],
            "difference": b["mean"] - a["mean"], "seeds": len(a["values"]),
            a_name: a, b_name: b, "lower": a_name, "higher": b_name}


def describe(claim, digits=3):
    """One line for a person: the verdict, the statement, and why, with both ranges and means."""
    a_name, b_name = claim["lower"], claim["higher"]
    a, b = claim[a_name], claim[b_name]

    def span(s):
        return f"{s['min']:.{digits}g}-{s['max']:.{digits}g}"

    means = f"means {a['mean']:.{digits}g} and {b['mean']:.{digits}g}"
    if claim["seeds"] == 1:
        why = f"{a_name} {a['mean']:.{digits}g}, {b_name} {b['mean']:.{digits}g}; one seed, so no spread was measured"
    elif claim["verdict"] == HOLDS:
        why = f"every seed of {a_name} ({span(a)}) is below every seed of {b_name} ({span(b)}); {means}"
    elif claim["verdict"] == DOES_NOT_HOLD:
        why = f"every seed of {b_name} ({span(b)}) is below every seed of {a_name} ({span(a)}); {means}"
    else:
        why = (f"over {claim['seeds']} seeds {a_name} ({span(a)}) and {b_name} ({span(b)}) overlap; "
               f"{means}")
    return f"{claim['verdict']}: {claim['statement']}: {why}"
