# Two commands on a fresh machine: `make demo` and `make test`. Each sets up its own environment.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch; on a GPU machine use e.g. `make install TORCH=torch` to keep a CUDA build.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
BASE_MODEL := outputs/tiny-base
export WANDB_MODE ?= offline
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test base-model sft evaluate clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "no chromium (Debian package, installed only as root): the trackio browser test will be skipped"
	touch $@

base-model: $(BASE_MODEL)/model.safetensors

$(BASE_MODEL)/model.safetensors: | $(VENV)/.installed
	$(BIN)/python train/pretrain.py --config configs/tiny/pretrain.yaml --output_dir $(BASE_MODEL)

# The demo and the SFT run start afresh each time; a run store is never overwritten by the scripts themselves.
demo: $(BASE_MODEL)/model.safetensors
	@[ ! -d outputs/tiny-grpo ] || { echo "sparks: replacing the previous demo run in outputs/tiny-grpo"; rm -rf outputs/tiny-grpo; }
	$(BIN)/accelerate launch --config_file configs/accelerate/cpu.yaml train/grpo.py --config configs/tiny/grpo.yaml
	@echo "sparks: head lineage stored in outputs/tiny-grpo/sparks/"
	@echo "sparks: open the heads dashboard with: $(BIN)/trackio show --project sparks"

sft: $(BASE_MODEL)/model.safetensors
	@[ ! -d outputs/tiny-sft ] || { echo "sparks: replacing the previous SFT run in outputs/tiny-sft"; rm -rf outputs/tiny-sft; }
	$(BIN)/accelerate launch --config_file configs/accelerate/cpu.yaml train/sft.py --config configs/tiny/sft.yaml

evaluate: $(BASE_MODEL)/model.safetensors
	$(BIN)/python train/evaluate.py --model $(BASE_MODEL) --out $(BASE_MODEL)/eval.json

test: $(BASE_MODEL)/model.safetensors
	$(BIN)/python -m pytest tests

clean:
	rm -rf outputs
