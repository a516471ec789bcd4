# orthofit: `make demo` designs an orthosis from a bundled sample scan; `make test` runs the tests.
# Both set everything up first on a fresh machine (system libraries, a virtualenv).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SAMPLE ?= scans/adult_left_floor_mm_zup.ply
OUT ?= out/demo
# The exact versions the tests pass with (hashes included); `make lock` updates it.
LOCK := requirements.lock
# Test processes (pytest-xdist; a file's tests stay in one); `make test TEST_WORKERS=1` for one.
TEST_WORKERS ?= 2

.PHONY: setup demo test bench samples lock openapi clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(LOCK) scripts/install-system-deps scripts/install-web service/web/package-lock.json
	scripts/install-system-deps
	scripts/install-web
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python scripts/check-lock $(LOCK)
	touch $@

demo: setup
	$(BIN)/orthofit design $(SAMPLE) -o $(OUT) --device solid-afo --case-ref demo-001

# The tests also run against a real PostgreSQL server, started here, and a
# real headless Chromium, both from Debian's packages.
test: setup
	$(BIN)/python scripts/check-lock $(LOCK)
	scripts/install-test-deps
	url=$$(scripts/start-postgres) && broker=$$(scripts/start-redis) && \
	  ORTHOFIT_TEST_POSTGRES_URL=$$url ORTHOFIT_TEST_BROKER_URL=$$broker $(BIN)/python -m pytest \
	  -n $(TEST_WORKERS) --dist loadfile --durations=25

bench: setup
	scripts/install-test-deps  # Redis for the Celery run
	$(BIN)/python -m bench.bench_intake
	$(BIN)/python -m bench.bench_design
	$(BIN)/python -m bench.bench_startup
	$(BIN)/python -m bench.bench_stiffness
	$(BIN)/python -m bench.bench_batch

# The newest versions pyproject.toml's ranges allow, resolved into the lock;
# then `make test` installs them and runs the suite on them.
lock: setup
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
	  --upgrade --custom-compile-command "make lock" --quiet -o $(LOCK)

# The review service's OpenAPI schema, committed as its contract (a test checks it).
openapi: setup
	$(BIN)/python scripts/write-openapi

samples: setup
	$(BIN)/python -m scans.make_samples

clean:
	rm -rf $(VENV) out .pytest_cache
