# Two commands: `make test` and `make demo`. Both set up what they need and are idempotent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ioengine-installed
SOURCES := pyproject.toml setup.py $(wildcard native/*.c native/*.h native/*.py)

.PHONY: test demo bench setup sysdeps clean

test: $(STAMP)
	$(PY) -m pytest -q

# The newcomer's tour: calibrate the disk under ./.scratch with iotune (short run), then the quick
# ioengine-vs-fio comparison (the engine alone; `ioengine-bench sched` measures the scheduler).
demo: $(STAMP)
	@mkdir -p .scratch/iotune
	$(PY) -m tools.iotune --evaluation-directory .scratch/iotune --properties-file .scratch/io_properties.yaml --duration 12
	$(PY) -m ioengine.bench compare --quick

setup: $(STAMP)

sysdeps:
	@scripts/ensure-system-deps.sh

$(STAMP): $(SOURCES)
	@scripts/ensure-system-deps.sh
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	@touch $(STAMP)

clean:
	rm -rf build *.egg-info ioengine/_native.c ioengine/*.so .scratch
