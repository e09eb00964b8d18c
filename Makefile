# Two commands from a fresh clone: `make demo` and `make test`.
#
# TORCH picks the PyTorch build installed first. The default pins the version only; which
# build pip finds depends on its index (on the public PyPI, Linux wheels bundle CUDA). Pick one:
#   make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
#   make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
#
# PYTHON is the first Python >= 3.11 on PATH (python3, python3.11, python3.12, python3.13);
# pick another with `make PYTHON=/path/to/python3.x ...`.
PYTHON ?= $(firstword $(foreach p,python3 python3.11 python3.12 python3.13,$(shell command -v $(p) >/dev/null 2>&1 && $(p) -c 'import sys; print(sys.version_info >= (3, 11))' 2>/dev/null | grep -qx True && echo $(p))))
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.mgspec-installed

.PHONY: install demo test test-fast compile lint clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "no Python >= 3.11 found: make PYTHON=/path/to/python3.x"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev,onnx,study,predict,kernels,tensorboard]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mgspec compile specs/mgiad_cifar10.yaml -o generated/
	$(BIN)/mgspec count specs/mgiad_cifar10.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

# Everything but the tests marked slow (real training, torch.compile): under a minute on 2 cores.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m "not slow"

compile: $(STAMP)
	$(BIN)/mgspec compile specs/*.yaml -o generated/

lint: $(STAMP)
	$(BIN)/ruff check mgspec tests benchmarks docs/reproduction.py docs/api.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
