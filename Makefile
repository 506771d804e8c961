# Two commands: `make test` and `make demo`. Both set up what they need and are idempotent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ioengine-installed
SOURCES := pyproject.toml setup.py $(wildcard native/*.c native/*.h native/*.cdef native/*.py)

.PHONY: test lint typecheck demo bench setup sysdeps clean asan soak

# ruff (lint) and mypy (types; config in pyproject.toml) first: a finding fails the run before the suite.
test: lint typecheck
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check ioengine iosched tools tests scripts

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The newcomer's tour: calibrate the disk under ./.scratch with iotune (short run), then the quick
# ioengine-vs-fio comparison (the engine alone; `ioengine-bench sched` measures the scheduler).
demo: $(STAMP)
	@mkdir -p .scratch/iotune
	$(PY) -m tools.iotune --evaluation-directory .scratch/iotune --properties-file .scratch/io_properties.yaml --duration 12
	$(PY) -m ioengine.bench compare --quick

# AddressSanitizer + UBSan: the C extensions (native/*.c) built with the sanitizers into a copy of
# the tree (build/asan; the working tree's own extensions are left alone), and a large part of the
# suite run there with libasan preloaded (CPython itself is not instrumented; leak checks are off,
# CPython leaks by design). Every report is collected (the run goes on after one, to find them
# all); the target fails if there is any. Reports stay in build/asan/reports.
# The working tree's extensions are never rebuilt or replaced: it stays usable throughout.
ASAN_DIR := build/asan
# (test_buffer_pool_memory measures RSS, which ASan's allocator and quarantine change: left out.)
ASAN_TESTS ?= tests/foundation tests/streams tests/reliability/test_fault_injection.py tests/iosched \
	--ignore=tests/foundation/test_buffer_pool_memory.py
ASAN_FLAGS := -fsanitize=address,undefined -fsanitize-recover=address -fno-omit-frame-pointer -g -O1
asan: | $(STAMP)
	rm -rf $(ASAN_DIR) && mkdir -p $(ASAN_DIR)/reports
	cp -r ioengine iosched tools native tests setup.py pyproject.toml README.md $(ASAN_DIR)/
	find $(ASAN_DIR) \( -name '*.so' -o -name __pycache__ -o -name '_native.c' \) -prune -exec rm -rf {} +
	cd $(ASAN_DIR) && CFLAGS="$(ASAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" \
		$(CURDIR)/$(PY) setup.py -q build_ext --inplace
	cd $(ASAN_DIR) && LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
		ASAN_OPTIONS=detect_leaks=0:halt_on_error=0:log_path=$(CURDIR)/$(ASAN_DIR)/reports/asan \
		UBSAN_OPTIONS=print_stacktrace=1:log_path=$(CURDIR)/$(ASAN_DIR)/reports/ubsan \
		$(CURDIR)/$(PY) -c 'import ioengine, ioengine._iopath as p, sys; assert ioengine.__file__.startswith("$(CURDIR)/$(ASAN_DIR)/"), ioengine.__file__; print("sanitized build:", p.__file__)'
	cd $(ASAN_DIR) && LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
		ASAN_OPTIONS=detect_leaks=0:halt_on_error=0:log_path=$(CURDIR)/$(ASAN_DIR)/reports/asan \
		UBSAN_OPTIONS=print_stacktrace=1:log_path=$(CURDIR)/$(ASAN_DIR)/reports/ubsan \
		$(CURDIR)/$(PY) -m pytest -q -p no:cacheprovider $(ASAN_TESTS)
	@if ls $(ASAN_DIR)/reports | grep -q .; then echo "sanitizer reports (build/asan/reports):"; \
		grep -h "SUMMARY\|runtime error" $(ASAN_DIR)/reports/*; exit 1; fi
	@echo "asan: clean (no AddressSanitizer/UBSan report)"

# Soak (not part of `make test`): 10 minutes of mixed I/O on every backend; SOAK_SECONDS shortens it.
SOAK_SECONDS ?= 600
soak: | $(STAMP)
	$(PY) scripts/soak.py --seconds $(SOAK_SECONDS)

setup: $(STAMP)

sysdeps:
	@scripts/ensure-system-deps.sh

$(STAMP): $(SOURCES)
	@scripts/ensure-system-deps.sh
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'setuptools>=77'
	$(PY) -m pip install -q -e '.[test,bench]'
	@touch $(STAMP)

clean:
	rm -rf build *.egg-info ioengine/_native.c ioengine/*.so .scratch
