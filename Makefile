# Two commands on a fresh machine: `make demo` and `make test`. Each sets up its own environment.
PYTHON ?= python3
VENV ?= .venv
# torch: a torch already in the environment is kept (pinned while the rest installs, never replaced).
# Otherwise $(TORCH) is installed, looked up first in $(TORCH_INDEX): PyTorch's CPU wheels by default,
# since PyPI's Linux wheels are CUDA builds (gigabytes). A GPU machine: `make install TORCH_INDEX=`
# (PyPI's CUDA build) or TORCH_INDEX=https://download.pytorch.org/whl/cu128; a torch of the system's
# own (a CUDA container): `make install VENV_FLAGS=--system-site-packages`. Only torch itself is looked up
# there; its dependencies come with the rest, from pip's usual index.
TORCH ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
VENV_FLAGS ?=
TORCH_VERSION := from importlib.metadata import version; print(version('torch'))
BIN := $(VENV)/bin
BASE_MODEL := outputs/tiny-base
export WANDB_MODE ?= offline
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test lint base-model sft grpo compare evaluate clean

# deepspeed (the `deepspeed` extra: ZeRO-3; the sharded tests run it on the CPU) is published as source
# only, and its setup.py reads the installed torch: it is built in this environment (--no-build-isolation;
# an isolated build has no torch), against the torch above, with no ops compiled ahead (DS_BUILD_OPS=0:
# the few a run uses compile on first use), for the CPU where torch sees no GPU (DS_ACCELERATOR). The
# package is installed first, so that this build finds setuptools (the `dev` extra) here. A change to
# this recipe (the Makefile) installs again into the same .venv, keeping its torch.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@if $(BIN)/python -c "$(TORCH_VERSION)" >/dev/null 2>&1; then \
		echo "sparks: keeping torch $$($(BIN)/python -c "$(TORCH_VERSION)") from $(VENV)"; \
	else \
		echo "sparks: installing $(TORCH)$(if $(TORCH_INDEX), (first from $(TORCH_INDEX)))"; \
		$(BIN)/python -m pip install --quiet --no-deps "$(TORCH)" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)); \
	fi
	echo "torch==$$($(BIN)/python -c "$(TORCH_VERSION)")" > $(VENV)/torch-pin.txt
	$(BIN)/python -m pip install --quiet -e ".[dev]" --constraint $(VENV)/torch-pin.txt
	DS_BUILD_OPS=0 DS_ACCELERATOR=$$($(BIN)/python -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')") \
		$(BIN)/python -m pip install --quiet --no-build-isolation -e ".[dev,deepspeed]" --constraint $(VENV)/torch-pin.txt
	command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "no chromium (Debian package, installed only as root): the trackio browser test will be skipped"
	touch $@

base-model: $(BASE_MODEL)/model.safetensors

$(BASE_MODEL)/model.safetensors: | $(VENV)/.installed
	$(BIN)/python train/pretrain.py --config configs/tiny/pretrain.yaml --output_dir $(BASE_MODEL)

# The demo: SFT and GRPO from the same base, both tracked, then compared side by side. Each run starts
# afresh; a run store is never overwritten by the scripts themselves, so the targets remove the old one.
demo: sft grpo compare
	@echo "sparks: head lineages stored in outputs/tiny-sft/sparks/ and outputs/tiny-grpo/sparks/"
	@echo "sparks: SFT against GRPO, side by side: outputs/tiny-compare/report.html"
	@echo "sparks: open the live heads dashboard with: $(BIN)/trackio show --project sparks"

compare: | $(VENV)/.installed
	@[ ! -d outputs/tiny-compare ] || { echo "sparks: replacing the previous comparison in outputs/tiny-compare"; rm -rf outputs/tiny-compare; }
	$(BIN)/sparks compare outputs/tiny-sft outputs/tiny-grpo --out outputs/tiny-compare

grpo: $(BASE_MODEL)/model.safetensors
	@[ ! -d outputs/tiny-grpo ] || { echo "sparks: replacing the previous GRPO run in outputs/tiny-grpo"; rm -rf outputs/tiny-grpo; }
	$(BIN)/accelerate launch --config_file configs/accelerate/cpu.yaml train/grpo.py --config configs/tiny/grpo.yaml

sft: $(BASE_MODEL)/model.safetensors
	@[ ! -d outputs/tiny-sft ] || { echo "sparks: replacing the previous SFT run in outputs/tiny-sft"; rm -rf outputs/tiny-sft; }
	$(BIN)/accelerate launch --config_file configs/accelerate/cpu.yaml train/sft.py --config configs/tiny/sft.yaml

evaluate: $(BASE_MODEL)/model.safetensors
	$(BIN)/python train/evaluate.py --model $(BASE_MODEL) --out $(BASE_MODEL)/eval.json

# The tests and the linters: both run, and either failing fails the target.
test: $(BASE_MODEL)/model.safetensors
	@status=0; $(MAKE) --no-print-directory lint || status=1; $(BIN)/python -m pytest tests || status=1; exit $$status

# ruff (style, imports, likely bugs) and mypy (types), configured in pyproject.toml.
lint: | $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf outputs
