# Every target sets up .venv first when it is missing (torch==2.13.0 first: a bare `torch`
# would pull a multi-GB CUDA build on a CPU machine), then works fully offline.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export WANDB_SILENT := true

.PHONY: setup base demo grpo-demo test test-fast lint format clean

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# The base student (configs/base_$(BASE).yaml) rebuilt from scratch, installed as
# models/bases/$(BASE)-qwen2_5_vl and measured into benchmarks/results/base_$(BASE).json.
# On a GPU: make base BASE_ARGS=train.cpu=false; the medium one: make base BASE=medium
BASE ?= tiny
base: setup
	rm -rf runs/models/$(BASE)-qwen2_5_vl-base-init runs/base-$(BASE)
	$(BIN)/python -m train --config configs/base_$(BASE).yaml $(BASE_ARGS)
	$(BIN)/python benchmarks/base_student.py --from-run runs/base-$(BASE) --model models/bases/$(BASE)-qwen2_5_vl \
		--out benchmarks/results/base_$(BASE).json

demo: setup
	$(BIN)/python -m train.demo --config configs/demo.yaml

grpo-demo: setup
	test -d runs/demo/model || $(BIN)/python -m train --config configs/demo.yaml
	$(BIN)/python -m train --config configs/grpo_demo.yaml

# One worker per core, one thread per worker (tests/conftest.py): tiny models on more threads than
# cores spin in OpenMP and run many times slower.
test: setup
	$(BIN)/python -m pytest -q -n auto

# The tests without those marked slow (kill -9 loops, torchrun ranks, compare subprocesses).
test-fast: setup
	$(BIN)/python -m pytest -q -n auto -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf runs .pytest_cache .ruff_cache
