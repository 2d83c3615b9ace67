# Two set-up commands for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

$(BIN)/cinerecon: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,ismrmrd]'
	# piq is the reference for HaarPSI/DISTS in tests; its torchvision requirement cannot sit beside torch 2.13.0 CPU
	$(BIN)/pip install -q --no-deps piq==0.8.0
	touch $@

install: $(BIN)/cinerecon

demo: install
	$(BIN)/cinerecon demo --out demo_out --overwrite --pretrained

test: install
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q

.PHONY: install demo test
