"""The arithmetic world: reproducible, exact, disjoint splits, graded difficulty."""

import ast
import itertools
import operator
import random
import re
from collections import Counter

import pytest

from sparks.tasks import arith, formats

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def independent_value(question: str) -> int:
    """Evaluate the question text with Python's own parser, not the generator's tree."""

    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](walk(node.left), walk(node.right))
        raise AssertionError(f"unexpected syntax in {question!r}")

    return walk(ast.parse(question, mode="eval"))


def test_same_seed_same_problems_and_different_seed_differs():
    first = arith.problems("train", [1, 3, 5], 60, seed=7)
    again = arith.problems("train", [1, 3, 5], 60, seed=7)
    other = arith.problems("train", [1, 3, 5], 60, seed=8)
    assert first == again
    assert [p.question for p in first] != [p.question for p in other]


@pytest.mark.parametrize("level", sorted(arith.LEVELS))
def test_answers_agree_with_an_independent_evaluation(level):
    for problem in arith.problems("train", [level], 200, seed=1):
        assert problem.answer == independent_value(problem.question)
        # The worked steps end in the answer, and each step is itself right.
        for step in problem.steps:
            expression, result = step.split("=")
            assert independent_value(expression) == int(result)
        assert int(problem.steps[-1].split("=")[1]) == problem.answer


def test_held_out_splits_never_overlap_training():
    levels = sorted(arith.LEVELS)
    train = {p.question for p in arith.problems("train", levels, 6000, seed=0)}
    test = {p.question for p in arith.problems("test", levels, 600, seed=0)}
    probe = {p.question for p in arith.problems("probe", levels, 600, seed=3)}
    assert test and probe
    assert not train & test and not train & probe and not test & probe


def test_levels_grow_harder():
    def features(level):
        problems = arith.problems("train", [level], 300, seed=2)
        return (
            max(len(p.steps) for p in problems),
            any("*" in p.question for p in problems),
            any("(" in p.question for p in problems),
            max(p.answer for p in problems),
        )

    assert features(1) == (1, False, False, 18)
    assert features(2)[3] > 18 and not features(2)[1]
    assert features(3)[0] == 2
    assert features(4)[1] and not features(4)[2]
    assert features(5)[2]
    assert features(6)[0] == 3 and features(6)[2]


def test_parentheses_change_the_order_of_evaluation():
    problems = arith.problems("train", [5, 6], 200, seed=4)
    assert all("(" in problem.question for problem in problems)
    # Without the brackets the text would mean something else (bar products by 0 or 1).
    changed = [independent_value(p.question.replace("(", "").replace(")", "")) != p.answer for p in problems]
    assert sum(changed) / len(changed) > 0.8


def test_intermediate_values_are_non_negative():
    for problem in arith.problems("train", sorted(arith.LEVELS), 600, seed=5):
        assert all(int(step.split("=")[1]) >= 0 for step in problem.steps)


def test_unique_draws_have_no_repeats_and_small_splits_give_what_they_have():
    level_one_test = arith.problems("test", [1], 1000, seed=0)
    assert len(level_one_test) == len({p.question for p in level_one_test}) < 100


def test_fill_makes_up_a_small_level_from_the_others_and_keeps_what_needed_no_filling():
    even = arith.problems("probe", [1, 2, 3], 30, seed=0)
    assert [p.level for p in even].count(1) == 6 and len(even) == 26  # level 1 holds 6 probe problems
    filled = arith.problems("probe", [1, 2, 3], 30, seed=0, fill=True)
    assert len(filled) == 30 and [p.level for p in filled].count(1) == 6
    by_level = {level: [p.question for p in filled if p.level == level] for level in (2, 3)}
    assert {level: len(questions) for level, questions in by_level.items()} == {2: 12, 3: 12}
    for level, questions in by_level.items():  # each level's larger draw begins with its even one
        assert questions[:10] == [p.question for p in even if p.level == level]
    assert arith.problems("probe", [2, 3], 20, seed=0, fill=True) == arith.problems("probe", [2, 3], 20, seed=0)
    assert len(arith.problems("probe", [1], 50, seed=0, fill=True)) == 6  # nothing to fill from


def every_tree(level: arith.Level):
    """Every tree arith._random_tree can draw at ``level``, one per choice it can make (operators, and
    for parentheses the bracketed group's size, place and operators; the operator before the group is
    made a product), each with every operand value."""

    def operands(count: int, taken: int | None = None):
        ranges = [range(level.first_operand[0], level.first_operand[1] + 1), *[range(level.max_operand + 1)] * (count - 1)]
        if taken is not None:  # the group's place: its drawn operand is replaced
            ranges[taken] = [None]
        for values in itertools.product(*ranges):
            yield [arith.Node(value=value) for value in values]

    count = level.num_operands
    if not level.parentheses:
        for ops in itertools.product(level.operators, repeat=count - 1):
            for leaves in operands(count):
                yield arith._chain(leaves, list(ops))
        return
    for size in range(2, count):
        for start in range(count - size + 1):
            for ops in itertools.product(level.operators, repeat=count - size):
                if ops[max(start - 1, 0)] != "*":
                    continue
                for group_ops in itertools.product("+-", repeat=size - 1):
                    for group in operands(size):
                        for outer in operands(count - size + 1, taken=start):
                            outer[start] = arith._chain(group, list(group_ops))
                            yield arith._chain(outer, list(ops))


def test_held_counts_every_distinct_problem_of_each_level_and_split():
    for number, level in arith.LEVELS.items():
        texts = [(arith.render(tree), arith.valid(tree)) for tree in every_tree(level)]
        questions = {text for text, valid in texts if valid}
        assert arith.HELD[number] == dict(Counter(arith.split_of(question) for question in questions))
        # The enumeration makes every tree shape the generator draws, and no other (its operands are whole ranges).
        rng = random.Random(number)
        drawn = {re.sub(r"\d+", "x", arith.render(arith._random_tree(level, rng))) for _ in range(3000)}
        assert {re.sub(r"\d+", "x", text) for text, _ in texts} == drawn
    assert arith.held("probe", [1, 2, 2]) == 6 + 56
    assert len(arith.problems("probe", [1, 2], 200, seed=0)) == arith.held("probe", [1, 2])  # small levels: all drawn


def test_fewer_problems_than_levels_come_from_the_first_levels():
    few = arith.problems("probe", [1, 2, 3, 4, 5, 6], 4, seed=0, fill=True)
    assert [p.level for p in few] == [1, 2, 3, 4]


def test_bad_levels_and_splits_are_rejected():
    with pytest.raises(ValueError, match="unknown level 9"):
        arith.generate(9, random.Random(0))
    with pytest.raises(ValueError, match="unknown split"):
        arith.problems("validation", [1], 3, seed=0)


def test_styles_and_answer_checking():
    problem = arith.Problem(question="7*(2+3)", answer=35, level=5, steps=("2+3=5", "7*5=35"))
    think = formats.think_completion(problem)
    direct = formats.direct_completion(problem)
    assert think == "<think>\n2+3=5\n7*5=35\n</think>\n<answer>35</answer>"
    assert direct == "<answer>35</answer>"
    assert formats.is_correct(think, 35) and formats.is_correct(direct, "35")
    assert not formats.is_correct("<answer>36</answer>", 35)
    assert not formats.is_correct("35", 35)
    assert not formats.is_correct("<answer>3 5</answer>", 35)
    assert formats.extract_answer("<answer>1</answer> then <answer> 2 </answer>") == "2"
    assert formats.has_think_format(think)
    assert not formats.has_think_format(direct)
    assert not formats.has_think_format("<think>\n\n</think>\n<answer>35</answer>")
    assert not formats.has_think_format(think + " and more")


def test_one_level_check_serves_every_entry_point_naming_its_field():
    from sparks.callbacks.config import TrackerConfig
    from sparks.train.arguments import DataArguments

    levels = "the arithmetic world's levels are 1, 2, 3, 4, 5, 6"
    with pytest.raises(ValueError, match=f"^tracker.levels: unknown level 0; {levels}$"):
        TrackerConfig(levels=(0, 1))
    with pytest.raises(ValueError, match=f"^levels: unknown level 9; {levels}$"):
        DataArguments(levels=[1, 9]).check()
    with pytest.raises(ValueError, match=f"^levels: no level given; {levels}$"):
        DataArguments(levels=[]).check()
    with pytest.raises(ValueError, match=f"^level: unknown level 7; {levels}$"):
        arith.generate(7, random.Random(0))
