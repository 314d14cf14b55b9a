# embedlab: `make demo` and `make test` set up .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test test-fast lint format bench clean browser

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "embedlab needs Python 3.11, found " + sys.version.split()[0]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,serve,ray]'
	@# Build the packaged encoder's ONNX graph (and its backend check) once, at install
	@# time, into the venv: the first `embedlab encode` then exports nothing.
	EMBEDLAB_ONNX_CACHE=$(CURDIR)/$(VENV)/share/embedlab EMBEDLAB_SYSTEM_GRAPHS=0 $(PY) -c \
	  'from embedlab.encoders import SentenceTransformerEncoder as E; print("prebuilt ONNX graph; backend", E(cache=False).resolved_backend)' \
	  || echo "could not prebuild the ONNX graph: it is exported on first use instead"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/embedlab demo

# Debian's chromium for the report's browser test; where it cannot be installed (not root,
# no apt), the test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q chromium >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) \
	    || echo "could not install chromium: the browser test will skip"; \
	  else echo "chromium not installed (needs root + apt): the browser test will skip"; fi; }

test: $(STAMP) browser
	$(PY) -m pytest -q --durations=25

# The fast tier: no packaged encoder, no ../shared/data, no child processes of note
# (tests marked slow or integration are left out; see tests/conftest.py). Under 90 s.
test-fast: $(STAMP)
	EMBEDLAB_TEST_TIER=fast $(PY) -m pytest -q -m "not slow and not integration" -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks tools

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks tools

bench: $(STAMP)
	$(PY) benchmarks/encode_clinc150.py

clean:
	rm -rf $(VENV) embedlab-demo .pytest_cache .ruff_cache
