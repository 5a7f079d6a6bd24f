"""Does a change keep what sparks computes? One revision's scores and run store against the working tree's.

    .venv/bin/python bench/same_behaviour.py --before 4b5697a
    .venv/bin/python bench/same_behaviour.py --before HEAD~3 --steps 6 --every 3

Checks ``--before`` out into a temporary git worktree and runs, with that tree's code and then with the
working tree's (each put first on the path: its ``src/``, or for a revision from before ``src/`` a folder
of links laid out as ``sparks.*``): ``sparks score`` at node and at edge level on one pair file, and a
tracked run of the tiny SFT recipe from the base model (``make base-model``). It then compares what they
wrote: the score files and the store's events, metrics and summary byte for byte, every tensor file
tensor by tensor, lineage.json, run.json and each snapshot.json as JSON, naming the fields that differ (a
snapshot's ``seconds`` aside, which is a clock). One line per file: ``same`` or what differs; exit status 1 if anything differs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("tasks", "probes", "callbacks", "analysis", "train", "runs", "dashboards")
BYTES = ("events.jsonl", "metrics.jsonl", "summary.json", "scores.json")


def package_path(tree: Path, scratch: Path) -> Path:
    """The folder that makes ``tree``'s code importable as ``sparks``: its src/, or links laid out as sparks.*."""
    if (tree / "src" / "sparks").is_dir():
        return tree / "src"
    farm = scratch / f"links-{tree.name}" / "sparks"
    farm.mkdir(parents=True)
    (farm / "__init__.py").symlink_to(tree / "sparks" / "__init__.py")
    for name in SUBPACKAGES:
        if (tree / name).is_dir():
            (farm / name).symlink_to(tree / name)
    return farm.parent


def run(tree: Path, path: Path, command: list[str]) -> None:
    """``command`` with ``tree``'s code first on the path, from the repository (configs and outputs are its)."""
    environment = {**os.environ, "PYTHONPATH": str(path), "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(command[:4])} failed with {tree.name}'s code:\n{result.stdout[-3000:]}")


def produce(tree: Path, path: Path, out: Path, pairs: Path, args: argparse.Namespace) -> None:
    """Scores at both levels and a tracked run, written under ``out`` by ``tree``'s code."""
    sparks = [sys.executable, "-c", "import sys; from sparks.analysis.cli import main; sys.exit(main())"]
    for level in ("node", "edge"):
        run(tree, path, [*sparks, "score", "--model", args.base, "--pairs", str(pairs), "--level", level,
                         "--replicates", "20", "--out", str(out / f"score-{level}")])
    tracker = {"every": args.every, "num_problems": 8, "replicates": 10, "dashboards": ["none"]}
    run(tree, path, [sys.executable, str(tree / "train" / "sft.py"), "--config", str(REPO / "configs/tiny/sft.yaml"),
                     "--model_name_or_path", args.base, "--output_dir", str(out / "run"), "--max_steps", str(args.steps),
                     "--report_to", "none", "--tracker", json.dumps(tracker)])


def written(out: Path) -> set[Path]:
    """The files sparks wrote under ``out`` (the scores, the run store), not the trainer's checkpoints."""
    return {path.relative_to(out) for folder in ("score-node", "score-edge", "run/sparks")
            for path in (out / folder).rglob("*") if path.is_file()}


def difference(before: Path, after: Path) -> str | None:
    """What differs between two files of one name, or None."""
    if before.name.endswith(".safetensors"):
        old, new = load_file(str(before)), load_file(str(after))
        changed = sorted(name for name in old.keys() | new.keys()
                         if name not in old or name not in new or not torch.equal(old[name], new[name]))
        return f"tensors {', '.join(changed)}" if changed else None
    if before.name in BYTES or not before.name.endswith(".json"):
        return None if before.read_bytes() == after.read_bytes() else "bytes"
    old, new = json.loads(before.read_text()), json.loads(after.read_text())
    if before.name == "snapshot.json":
        old.pop("seconds", None), new.pop("seconds", None)
    changed = sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))
    return f"fields {', '.join(changed)}" if changed else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the revision to compare the working tree with")
    parser.add_argument("--base", default=str(REPO / "outputs" / "tiny-base"), help="the model scored and trained")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--every", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        old_tree = scratch / "before"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(old_tree), args.before], cwd=REPO, check=True)
        try:
            trees = {"before": (old_tree, package_path(old_tree, scratch)), "after": (REPO, package_path(REPO, scratch))}
            pairs = scratch / "pairs.jsonl"
            run(old_tree, trees["before"][1], [sys.executable, "-c", "import sys; from sparks.analysis.cli import main; "
                                               "sys.exit(main())", "pairs", "--scheme", "numbers", "--model", args.base,
                                               "--count", "16", "--out", str(pairs)])
            for name, (tree, path) in trees.items():
                produce(tree, path, scratch / f"out-{name}", pairs, args)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=REPO, check=True)
        before, after = scratch / "out-before", scratch / "out-after"
        before_files, after_files = written(before), written(after)
        differs = 0
        for name in sorted(before_files | after_files):
            if name not in after_files or name not in before_files:
                found = "only after" if name in after_files else "only before"
            else:
                found = difference(before / name, after / name) or "same"
            differs += found != "same"
            print(f"{found:>12}  {name}")
        print(f"{args.before} against the working tree: {differs} of {len(before_files | after_files)} files differ")
        return int(differs > 0)


if __name__ == "__main__":
    sys.exit(main())
