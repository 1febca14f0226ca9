"""minires.exercises, the check cells of the tutorials: ✓, ✗ and stop, "not answered yet" and
go on, "skipped" and go on, and a real error shown and raised."""
import pytest

from minires.exercises import Skip, answered, check


def unanswered():
    pass  # what a student leaves


def test_right_and_wrong_answers(capsys):
    check("Exercise 1: right", lambda: answered(7.0) == 7.0, "hint")
    assert capsys.readouterr().out == "✓ Exercise 1: right\n"
    with pytest.raises(AssertionError, match="Exercise 2: wrong: think again"):
        check("Exercise 2: wrong", lambda: answered(6.0) == 7.0, "think again")
    assert capsys.readouterr().out == "✗ Exercise 2: wrong\n  hint: think again\n"


@pytest.mark.parametrize("test", [lambda: answered(...) == 7.0, lambda: answered(unanswered()) + 1,
                                  lambda: answered(1.0, None)])
def test_pass_or_ellipsis_is_not_answered_yet_and_the_notebook_goes_on(test, capsys):
    check("Exercise 3: later", test, "hint")
    assert capsys.readouterr().out.startswith("… Exercise 3: later: not answered yet")


def test_a_check_that_cannot_run_here_is_skipped(capsys):
    def needs_a_gpu():
        raise Skip("no GPU and no C++ compiler")

    check("Exercise 4: a kernel", needs_a_gpu)
    assert capsys.readouterr().out == "- Exercise 4: a kernel: skipped, no GPU and no C++ compiler\n"


def test_an_error_in_a_real_answer_is_shown_and_raised(capsys):
    with pytest.raises(ZeroDivisionError):
        check("Exercise 5: broken", lambda: answered(1.0) / 0 == 1, "divide by the count")
    assert capsys.readouterr().out.startswith("✗ Exercise 5: broken: ZeroDivisionError: ")


def test_answered_hands_the_values_back():
    assert answered(3) == 3 and answered(1, 2) == (1, 2)
