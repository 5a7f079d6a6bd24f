"""The arithmetic world: seeded integer problems at graded difficulty, with exact answers.

A problem is an expression tree over non-negative integers. Every intermediate result is
non-negative, so a step-by-step trace never needs a unary minus. Splits are decided by a hash of
the expression text, so training, held-out and probe problems can never overlap whatever the seed.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

OPERATORS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
PRECEDENCE = {"+": 1, "-": 1, "*": 2}
VALUE_RANGE = range(100)
"""Every intermediate value of every problem lies here, so every step stays a learnable fact."""
SPLITS = ("train", "test", "probe")


@dataclass(frozen=True)
class Level:
    """How hard a problem is: operand count and size, operators, parentheses.

    Operands are single digits except the first operand's range, which makes a level "two-digit".
    Small operands keep every single step a fact a tiny model can learn in minutes; difficulty comes
    from composing steps, which is where writing them out pays.
    """

    number: int
    num_operands: int
    operators: str
    parentheses: bool
    first_operand: tuple[int, int] = (0, 9)
    max_operand: int = 9


LEVELS: dict[int, Level] = {
    1: Level(1, num_operands=2, operators="+", parentheses=False),
    2: Level(2, num_operands=2, operators="+-", parentheses=False, first_operand=(10, 39)),
    3: Level(3, num_operands=3, operators="+-", parentheses=False),
    4: Level(4, num_operands=3, operators="+-*", parentheses=False),
    5: Level(5, num_operands=3, operators="+-*", parentheses=True),
    6: Level(6, num_operands=4, operators="+-*", parentheses=True),
}


@dataclass(frozen=True)
class Node:
    """An expression tree: a leaf holds `value`; an inner node holds `op`, `left`, `right`."""

    value: int | None = None
    op: str | None = None
    left: Node | None = None
    right: Node | None = None

    @property
    def is_leaf(self) -> bool:
        return self.op is None

    def number(self) -> int:
        """A leaf's value."""
        if self.value is None:
            raise ValueError(f"not a leaf: {self}")
        return self.value

    def branches(self) -> tuple[str, Node, Node]:
        """An inner node's operator and operands."""
        if self.op is None or self.left is None or self.right is None:
            raise ValueError(f"not an inner node: {self}")
        return self.op, self.left, self.right


def evaluate(node: Node) -> int:
    """Exact value of an expression tree."""
    if node.is_leaf:
        return node.number()
    op, left, right = node.branches()
    return OPERATORS[op](evaluate(left), evaluate(right))


def render(node: Node, parent_precedence: int = 0, right_child: bool = False) -> str:
    """Infix text with the fewest parentheses that keep the tree's meaning."""
    if node.is_leaf:
        return str(node.value)
    op, left, right = node.branches()
    precedence = PRECEDENCE[op]
    text = f"{render(left, precedence)}{op}{render(right, precedence, right_child=True)}"
    needs_parens = precedence < parent_precedence or (right_child and precedence == parent_precedence)
    return f"({text})" if needs_parens else text


def steps(node: Node) -> list[str]:
    """One line per operation, in the order a person evaluates them: `a op b=c`."""
    if node.is_leaf:
        return []
    op, left_node, right_node = node.branches()
    lines = steps(left_node) + steps(right_node)
    left, right = evaluate(left_node), evaluate(right_node)
    lines.append(f"{left}{op}{right}={OPERATORS[op](left, right)}")
    return lines


@dataclass(frozen=True)
class Problem:
    """One arithmetic question with its exact answer and worked steps."""

    question: str
    answer: int
    level: int
    steps: tuple[str, ...]

    @property
    def split(self) -> str:
        return split_of(self.question)


def split_of(question: str) -> str:
    """The split a question belongs to, fixed by its text: 80% train, 10% test, 10% probe."""
    bucket = int(hashlib.sha256(question.encode()).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "probe" if bucket == 1 else "train"


HELD: dict[int, dict[str, int]] = {
    1: {"train": 85, "test": 9, "probe": 6},
    2: {"train": 488, "test": 56, "probe": 56},
    3: {"train": 2081, "test": 276, "probe": 248},
    4: {"train": 5042, "test": 663, "probe": 631},
    5: {"train": 2394, "test": 301, "probe": 281},
    6: {"train": 116847, "test": 14564, "probe": 14834},
}
"""How many distinct problems each level's split holds: every question `_random_tree` can draw whose
intermediate values are valid, by `split_of`. Counted once by enumerating every tree (tests/test_arith.py
counts them again), since drawing them all takes minutes."""


def check_levels(levels: Iterable[int], field: str) -> None:
    """Refuse (ValueError naming ``field``) an empty list of levels or a level the arithmetic world does not have."""
    levels = list(levels)
    unknown = [level for level in levels if level not in LEVELS]
    if unknown or not levels:
        what = f"unknown level {unknown[0]!r}" if unknown else "no level given"
        raise ValueError(f"{field}: {what}; the arithmetic world's levels are {', '.join(map(str, LEVELS))}")


def held(split: str, levels: Iterable[int]) -> int:
    """How many distinct problems `levels` of `split` hold together: the most `problems` can give, known
    without drawing, so that a count asked for is checked at once."""
    return sum(HELD[level][split] for level in set(levels))


def _random_tree(level: Level, rng: random.Random) -> Node:
    count = level.num_operands
    ops = [rng.choice(level.operators) for _ in range(count - 1)]
    if not level.parentheses:
        return _chain(_leaves(level, rng, count), ops)
    # A bracketed sum or difference multiplied by a neighbour, so the brackets change the order.
    size = rng.randint(2, count - 1)
    start = rng.randint(0, count - size)
    group_ops = [rng.choice("+-") for _ in range(size - 1)]
    group = _chain(_leaves(level, rng, size), group_ops)
    outer_ops = ops[: count - size]
    outer_ops[start - 1 if start > 0 else 0] = "*"
    operands = _leaves(level, rng, len(outer_ops) + 1)
    operands[start] = group
    return _chain(operands, outer_ops)


def _leaves(level: Level, rng: random.Random, count: int) -> list[Node]:
    """One leaf per operand, the first drawn from the level's first-operand range."""
    first = Node(value=rng.randint(*level.first_operand))
    return [first, *(Node(value=rng.randint(0, level.max_operand)) for _ in range(count - 1))]


def _chain(operands: list[Node], ops: list[str]) -> Node:
    """Join operands with ops left to right, products binding before sums and differences."""
    terms = [operands[0]]
    additive_ops: list[str] = []
    for op, operand in zip(ops, operands[1:]):
        if op == "*":
            terms[-1] = Node(op="*", left=terms[-1], right=operand)
        else:
            additive_ops.append(op)
            terms.append(operand)
    tree = terms[0]
    for op, term in zip(additive_ops, terms[1:]):
        tree = Node(op=op, left=tree, right=term)
    return tree


def valid(node: Node) -> bool:
    """Whether every intermediate value of `node` lies in VALUE_RANGE."""
    return evaluate(node) in VALUE_RANGE and (node.is_leaf or all(valid(operand) for operand in node.branches()[1:]))


def generate(level: int, rng: random.Random) -> Problem:
    """One random problem at `level`, drawn until all intermediate values are valid."""
    if level not in LEVELS:
        check_levels([level], "level")
    while True:
        tree = _random_tree(LEVELS[level], rng)
        if valid(tree):
            return Problem(question=render(tree), answer=evaluate(tree), level=level, steps=tuple(steps(tree)))


def problems(
    split: str, levels: list[int] | tuple[int, ...], count: int, seed: int, unique: bool = True, fill: bool = False
) -> list[Problem]:
    """`count` problems from `split`, spread evenly over `levels`, reproducible from `seed`.

    With `unique`, a level whose split holds fewer distinct problems than asked gives what it has;
    with `fill` as well, the levels with problems to spare make up its shortfall (so fewer than
    `count` means the levels together hold fewer). A level's draw for a larger share begins with
    its draw for a smaller one, so filling never changes a request that needed none.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits are {SPLITS}")
    if not levels:
        raise ValueError("levels must not be empty")
    shares = dict(zip(levels, [count // len(levels) + (i < count % len(levels)) for i in range(len(levels))]))
    drawn: dict[int, list[Problem]] = {level: [] for level in levels}
    exhausted: set[int] = set()
    while True:
        for level in levels:
            if level not in exhausted and len(drawn[level]) < shares[level]:
                drawn[level] = list(_draw(split, level, shares[level], random.Random(f"{seed}-{split}-{level}"), unique))
                if len(drawn[level]) < shares[level]:
                    exhausted.add(level)
        short = sum(shares[level] - len(drawn[level]) for level in levels)
        spare = [level for level in levels if level not in exhausted]
        if not fill or short == 0 or not spare:
            return [problem for level in levels for problem in drawn[level]]
        shares = {level: len(drawn[level]) for level in levels}
        for index, level in enumerate(spare):
            shares[level] += short // len(spare) + (index < short % len(spare))


def _draw(split: str, level: int, wanted: int, rng: random.Random, unique: bool) -> Iterator[Problem]:
    seen: set[str] = set()
    misses = 0
    while len(seen) < wanted and misses < 2000:
        problem = generate(level, rng)
        if problem.split != split or (unique and problem.question in seen):
            misses += 1
            continue
        misses = 0
        if unique:
            seen.add(problem.question)
        else:
            seen.add(f"{len(seen)}")
        yield problem
