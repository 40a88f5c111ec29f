# Two commands a new user needs: `make demo` and `make test`. Each sets itself up in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test packages lint bench screenshots setup clean

DEMO_STAMP := $(VENV)/.demo-installed

# On Linux a bare "torch" from PyPI is the CUDA build (several GB); the demo trains on the CPU,
# so its install takes torch from PyTorch's CPU wheel index. macOS wheels on PyPI are CPU builds
# already. constraints.txt pins the version only. `make setup` and `make test` stay on PyPI
# alone (CI runs offline but for PyPI); run `make demo` first for the CPU build in .venv.
ifeq ($(shell uname -s),Linux)
TORCH_INDEX := --extra-index-url https://download.pytorch.org/whl/cpu
endif

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py remote/pyproject.toml remote/colabtui_remote/VERSION constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e './remote[drive]' -e '.[demo,dev,drive,colab]'
	# Google's Colab CLI asks for Python >= 3.12 but runs on 3.11 (constraints.txt says why).
	$(BIN)/python -m pip install --quiet -c constraints.txt --ignore-requires-python google-colab-cli
	touch $(STAMP)

# Only what the demo needs, with the CPU build of torch on Linux.
$(DEMO_STAMP): pyproject.toml setup.py remote/pyproject.toml remote/colabtui_remote/VERSION constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt $(TORCH_INDEX) -e './remote' -e '.[demo]'
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/colabtui demo $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# Both packages built (wheel and sdist), twine-checked, installed into a fresh venv and smoke-tested.
packages: $(STAMP)
	scripts/check_packages.sh $(abspath $(BIN))/python

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(BIN)/python bench/run_all.py

screenshots: $(STAMP)
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
