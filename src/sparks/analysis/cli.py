"""The ``sparks`` command line: build probe pair sets, score heads and edges on a saved model, compare runs, and
test what heads do (thinking on/off circuits, ablation and scaling).

    sparks pairs --scheme numbers --model outputs/tiny-base --split probe --levels 1 2 3 --count 64 --out pairs.jsonl
    sparks pairs --scheme style --model outputs/tiny-base --reasoning-model outputs/tiny-grpo --baseline-model outputs/tiny-base --out style.jsonl
    sparks score --model outputs/tiny-base --pairs pairs.jsonl --method eap-ig --level edge --metric kl --out scores/
    sparks compare outputs/tiny-grpo outputs/tiny-sft --out compare/ --wandb
    sparks rescore outputs/tiny-grpo-saved --base outputs/tiny-base --method eap --metric logit_diff
    sparks think --model outputs/tiny-base --out think/
    sparks ablate --model outputs/tiny-base --from-run outputs/tiny-sft --emergent --mode scale --factor 1.3

Bad input (a pair file that is missing, empty, mistyped or made with another tokenizer, a head out of
range, a model without the expected modules, a model whose scores are NaN or inf) ends with one
``sparks: error: ...`` line and exit status 2, before anything is written. Flags are checked before
any model loads or any work begins: counts are whole numbers > 0, real numbers finite, a flag the
command does not know is refused with that command's usage, and more arithmetic problems than the
asked levels hold are refused without drawing them.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn, Protocol

from sparks.analysis.commands import ablate, compare, pairs, rescore, score, think
from sparks.runs.store import first_line


class Command(Protocol):
    """A subcommand's module (analysis.commands): its parser, and what it runs."""

    def add_parser(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser: ...

    def run(self, args: argparse.Namespace) -> None: ...


COMMANDS: tuple[Command, ...] = (pairs, score, think, compare, rescore, ablate)
"""The subcommands, in the order ``sparks --help`` lists them."""


class _Parser(argparse.ArgumentParser):
    """argparse with its refusals in the form of every other: the command's usage, then one
    ``sparks: error: --flag: why`` line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"sparks: error: {message.removeprefix('argument ')}\n")


def parser() -> argparse.ArgumentParser:
    """The whole command line: every command of ``COMMANDS``, each remembering its own parser for refusals."""
    root = _Parser(prog="sparks", description=__doc__.splitlines()[0])
    subparsers = root.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command_parser = command.add_parser(subparsers)
        command_parser.set_defaults(command_parser=command_parser)
    return root


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` names: exit status 0, or 2 after one ``sparks: error: ...`` line."""
    args, unknown = parser().parse_known_args(argv)
    if unknown:  # argparse hands a command's unknown flags to the top-level parser, whose usage does not list them
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        args.run(args)
    except (ValueError, IndexError, OSError) as error:
        print(f"sparks: error: {first_line(error)}", file=sys.stderr)
        return 2
    return 0
