"""Run under `accelerate launch`: train/sft.py, recording how each snapshot's model is held (held_parameters).

    accelerate launch --config_file CONFIG -m tests.callbacks.sharded_training RECORD SFT_ARGS...

Everything else is train/sft.py's own ``main``, as `accelerate launch train/sft.py SFT_ARGS...` runs it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sparks.train.launcher import follow_launcher

if __name__ == "__main__":
    follow_launcher()

from trl import ModelConfig, SFTConfig

from sparks.train import sft
from sparks.train.arguments import RecipeArguments, parse_recipe
from tests.callbacks.held_parameters import recording

if __name__ == "__main__":
    recording(Path(sys.argv[1]))
    sft.main(*parse_recipe((RecipeArguments, SFTConfig, ModelConfig), sys.argv[2:]))
