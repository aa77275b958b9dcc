# xputrace: `make run` starts what exists of the platform, `make test` runs every test.
# Both set everything up first: Debian packages, the Python venv, the CMake build.

PYTHON ?= python3
VENV   ?= .venv
BUILD  ?= build
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: all deps venv build test test-fast bench run clean lint

all: build

deps:
	./scripts/install-deps

$(STAMP): pyproject.toml
	$(MAKE) deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,test]'
	touch $@

venv: $(STAMP)

CUDART12 = $(shell $(PY) -c 'import nvidia.cuda_runtime as m, os; print(os.path.join(list(m.__path__)[0], "lib", "libcudart.so.12"))')

build: venv
	cmake -S . -B $(BUILD) -DXPU_CUDART12_LIB=$(CUDART12) \
	      -DXPU_CUDART12_INCLUDE=$(abspath $(dir $(CUDART12))../include) \
	      -DXPU_CUDA12_CRT_INCLUDE=$(abspath $(dir $(CUDART12))../../cuda_nvcc/include)
	cmake --build $(BUILD) -j$$(nproc)

test: build lint
	XPUTRACE_BUILD_DIR=$(abspath $(BUILD)) $(PY) -m pytest -ra $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check backend manager trace_export tests bench

bench: build
	$(PY) bench/probe_cost.py --build $(BUILD)
	$(PY) bench/agent_drain.py --build $(BUILD)

# Until the backend lands (issue 3) this traces one process into a capture file
# and prints its events as JSON lines when you press Ctrl-C: make run PID=1234
run: build
	@test -n "$(PID)" || { echo "usage: make run PID=<pid of a process using CUDA>"; exit 2; }
	mkdir -p var
	$(BUILD)/xputrace-agent --monitor-id local --monitor-type CUDA --target-pid $(PID) \
	    --output var/capture.bin || true
	$(PY) -m backend.dump var/capture.bin

clean:
	rm -rf $(BUILD)
