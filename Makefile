# Teaclave: two set-up commands, `make demo` and `make test`, each installing what is missing.
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synced-stamp
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
export GRPC_VERBOSITY := ERROR

.PHONY: all demo test lint typecheck imports pytest proto bench clean system-packages

all: test

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --require-hashes -r scripts/bootstrap-requirements.txt

# Debian packages (clang, lld) for building the WebAssembly payloads, installed if missing.
system-packages:
	sh scripts/system-packages.sh

# The virtual environment, exactly as uv.lock says (hashes checked); the system packages
# come first (order-only: checked on every run, never a reason to sync again).
$(STAMP): $(UV) uv.lock pyproject.toml | system-packages
	$(UV) sync --locked --python $(PYTHON)
	touch $@

demo: $(STAMP)
	$(BIN)/teaclave demo

test: lint typecheck imports pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/python -m teaclave.assurance.iomanifest  # I/O uses vs io-manifest.toml
	$(BIN)/python scripts/check_standalone.py  # no data read from beside the checkout

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

# The sandbox forks only from a single-threaded process, so the tests that spawn it
# in-process run in a pytest process of their own (before others start threads).
SANDBOX_TESTS := tests/sandbox tests/executor/test_python_executor.py tests/executor/test_wasm_sandboxed.py

pytest: $(STAMP)
	$(BIN)/pytest -q $(SANDBOX_TESTS)
	$(BIN)/pytest -q $(SANDBOX_TESTS:%=--ignore=%)

# Regenerate src/teaclave/proto from proto/ (tests check the committed copy is current).
proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache
