# Two commands from a fresh clone: `make demo` and `make test`.
#
# TORCH picks the PyTorch build installed first. The default pins the version only; which
# build pip finds depends on its index (on the public PyPI, Linux wheels bundle CUDA). Pick one:
#   make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
#   make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3.11
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.mgspec-installed

.PHONY: install demo test compile lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev,onnx,study]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mgspec compile specs/mgiad_cifar10.yaml -o generated/
	$(BIN)/mgspec count specs/mgiad_cifar10.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

compile: $(STAMP)
	$(BIN)/mgspec compile specs/*.yaml -o generated/

lint: $(STAMP)
	$(BIN)/ruff check mgspec tests benchmarks docs/reproduction.py docs/api.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
