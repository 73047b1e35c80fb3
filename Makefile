# The two set-up commands of the README: `make demo` and `make test`.
# Each creates the virtual environment it needs in .venv.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	@bash scripts/demo.sh

# Bytecode is cached outside the tree (as tests/conftest.py does for the processes the tests start),
# so pytest's own workers do not compile every module from source when PYTHONDONTWRITEBYTECODE is set.
test: $(STAMP)
	env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX="$${TMPDIR:-/tmp}/weft-tests-pycache-$$(id -u)" \
		$(BIN)/python -m pytest -p no:cacheprovider -n 4 --dist worksteal

bench: $(STAMP)
	$(BIN)/python benchmarks/compile.py 10000
	$(BIN)/python benchmarks/runtime.py

clean:
	rm -rf $(VENV) .weft out
