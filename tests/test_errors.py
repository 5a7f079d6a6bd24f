import pytest

from sparks.probes.schemes import parse
from sparks.tasks import arith
from sparks.tasks.errors import CATEGORIES, categorise, is_loop

STEPS = ("4*2=8", "3+8=11")  # the worked steps of 3+4*2 (answer 11)


def test_the_worked_steps_are_the_arithmetic_worlds():
    tree = parse("3+4*2")
    assert tuple(arith.steps(tree)) == STEPS and arith.evaluate(tree) == 11


@pytest.mark.parametrize(
    ("completion", "truncated", "category"),
    [
        ("<think>\n4*2=8\n4*2=8\n4*2=8\n4*2=8\n", True, "loop"),
        ("<think>\n4*2=8\n3+8=11\n</think>\n<answer>11111111111111", True, "loop"),
        ("<think>\n4*2=8\n3+8=", True, "truncated"),
        ("<think>\n4*2=8\n3+8=11\n</think>\n11", False, "format"),
        ("<think>\n4*2=8\n3+8=11\n<answer>11</answer>", False, "format"),
        ("<think>\nfour times two\n</think>\n<answer>12</answer>", False, "format"),
        ("<think>\n4*2=8\n3+8=12\n</think>\n<answer>12</answer>", False, "slip"),
        ("<think>\n4*2=8\n4+8=12\n</think>\n<answer>12</answer>", False, "plan"),
        ("<think>\n3+4=7\n7*2=14\n</think>\n<answer>14</answer>", False, "plan"),
        ("<think>\n4*2=8\n3+8=11\n</think>\n<answer>12</answer>", False, "final"),
        ("<think>\n\n</think>\n<answer>12</answer>", False, "direct"),
        ("<answer>12</answer>", False, "direct"),
    ],
)
def test_one_hand_written_completion_per_category(completion, truncated, category):
    assert categorise(completion, truncated, STEPS) == category


def test_real_data_sets_steps_are_not_checked():
    text = "<think>\nShe has 3 apples and buys 4 more, so 3 + 4 = 8.\n</think>\n<answer>8</answer>"
    assert categorise(text, False, None) == "unchecked"
    assert categorise("<answer>\\frac{1}{2}</answer>", False, None) == "direct"
    assert categorise("<answer>\\frac{1}{2}</answer>", False, STEPS) == "format"


def test_every_category_is_reachable_and_named():
    assert set(CATEGORIES) == {"loop", "truncated", "format", "slip", "plan", "final", "direct", "unchecked"}


@pytest.mark.parametrize(
    ("text", "loop"),
    [
        ("<answer>1000</answer>", False),  # three zeros are a number, not a loop
        ("<think>\n1+1=2\n2+2=4\n</think>\n<answer>4</answer>", False),
        ("abababab", True),
        ("<think>\n3+4=7\n</think>\n<answer>7</answer>" + "</answer>" * 4, True),
        ("x\ny\nx\ny\nx", True),  # a line written three times
    ],
)
def test_loops(text, loop):
    assert is_loop(text) is loop
