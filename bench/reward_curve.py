"""Did a GRPO run learn? Mean reward over the first and last N logged steps of a run directory.

    python bench/reward_curve.py outputs/tiny-grpo --window 20
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KEYS = ("rewards/accuracy_reward/mean", "rewards/format_reward/mean", "reward", "completions/mean_length")


def reward_windows(run_dir: Path, window: int) -> dict[str, tuple[float, float]]:
    """`{metric: (mean of the first window, mean of the last window)}` from the run's trainer_state.json."""
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    windows = {}
    for key in KEYS:
        series = [entry[key] for entry in history if key in entry]
        if len(series) >= 2 * window:
            windows[key] = (sum(series[:window]) / window, sum(series[-window:]) / window)
    return windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--window", type=int, default=20)
    args = parser.parse_args()
    history = json.loads((args.run_dir / "trainer_state.json").read_text())["log_history"]
    runtime = next((entry["train_runtime"] for entry in history if "train_runtime" in entry), float("nan"))
    print(f"{'metric':<32} first {args.window:<4} last {args.window:<4} ratio")
    for key, (first, last) in reward_windows(args.run_dir, args.window).items():
        ratio = last / first if first else float("inf")
        print(f"{key:<32} {first:<10.3f} {last:<9.3f} {ratio:.2f}")
    print(f"train_runtime {runtime:.0f} s, {history[-1].get('step', '?')} steps")


if __name__ == "__main__":
    main()
