"""The check cells of the tutorials' exercises: ✓, ✗ with a hint, or "not answered yet".

Every tutorial (tutorials/*.py) ends with exercises. Each ships with one possible answer
filled in; a student deletes it, writes their own, and runs the check cell after it:

    from minires.exercises import answered, check

    check("Exercise 2: gradients of a value used twice add up",
          lambda: answered(answer_exercise_2) == x.grad,
          "every use of x contributes its own term to df/dx")

``check`` runs the test and prints ✓ when it returns True, or ✗ and the hint and stops
(an assert) when it returns False or fails. An exercise not done yet must not stop the
notebook with a ``TypeError``: a function body that is only ``pass`` returns None, and a
value left as ``...`` is Ellipsis, so the test passes every answer through ``answered``,
which raises ``NotAnswered`` for those; ``check`` then prints "not answered yet" and the
cells after it still run. A test that cannot run on this machine (no GPU, no compiler)
raises ``Skip`` with the reason.
"""


class NotAnswered(Exception):
    """An exercise still holds its placeholder, ``pass`` or ``...``, instead of an answer."""


class Skip(Exception):
    """A check that cannot run here; its message says why."""


def answered(*values):
    """The values, unchanged; NotAnswered if one of them is None or ``...``: what a ``pass`` body
    returns (and any function that forgets ``return``), and what ``answer = ...`` holds."""
    if any(value is None or value is Ellipsis for value in values):
        raise NotAnswered
    return values[0] if len(values) == 1 else values


def check(name, test, hint=""):
    """Run test() and print ✓ if it returns True. If it returns False or fails with an error,
    print ✗ and the hint, and stop. If an answer is missing (NotAnswered), or the check cannot
    run here (Skip), say so and go on."""
    try:
        ok = test()
    except NotAnswered:
        print(f"… {name}: not answered yet (still `pass` or `...`, or a function without `return`)")
        return
    except Skip as reason:
        print(f"- {name}: skipped, {reason}")
        return
    except Exception as error:
        print(f"✗ {name}: {type(error).__name__}: {error}\n  hint: {hint}")
        raise
    print(f"✓ {name}" if ok else f"✗ {name}\n  hint: {hint}")
    assert ok, f"{name}: {hint}"
