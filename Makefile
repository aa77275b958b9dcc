# xputrace: `make run` starts the platform on this host, `make test` runs every test.
# Both set everything up first: Debian packages, the Python venv, the CMake build.

PYTHON ?= python3
VENV   ?= .venv
BUILD  ?= build
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: all deps venv build test test-fast bench run clean lint trace-processor

all: build

deps:
	./scripts/install-deps

$(STAMP): pyproject.toml setup.py $(wildcard trace_export/*.c trace_export/*.h)
	$(MAKE) deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,test]'
	touch $@

venv: $(STAMP)

CUDART12 = $(shell $(PY) -c 'import nvidia.cuda_runtime as m, os; print(os.path.join(list(m.__path__)[0], "lib", "libcudart.so.12"))')
NVML_INCLUDE = $(shell $(PY) -c 'import nvidia.nvml_dev as m; print(list(m.__path__)[0] + "/include")')
NCCL2 = $(shell $(PY) -c 'import nvidia.nccl as m, os; print(os.path.join(list(m.__path__)[0], "lib", "libnccl.so.2"))')

build: venv
	cmake -S . -B $(BUILD) -DXPU_CUDART12_LIB=$(CUDART12) -DXPU_PYTHON=$(abspath $(PY)) \
	      -DXPU_CUDART12_INCLUDE=$(abspath $(dir $(CUDART12))../include) \
	      -DXPU_CUDA12_CRT_INCLUDE=$(abspath $(dir $(CUDART12))../../cuda_nvcc/include) \
	      -DXPU_NCCL2_LIB=$(NCCL2) -DXPU_NVML_INCLUDE=$(NVML_INCLUDE)
	cmake --build $(BUILD) -j$$(nproc)

# Perfetto's trace processor (WebAssembly, run by Node) for the trace cross-checks.
trace-processor:
	./scripts/fetch-trace-processor $(BUILD)/trace_processor

test: build lint trace-processor
	XPUTRACE_BUILD_DIR=$(abspath $(BUILD)) XPUTRACE_REQUIRE_TRACE_PROCESSOR=1 \
	XPUTRACE_TRACE_PROCESSOR_WASM=$(abspath $(BUILD))/trace_processor $(PY) -m pytest -ra $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check xpucore backend manager trace_export tests bench
	$(PY) -m ruff format --check xpucore backend manager trace_export tests bench
	$(PY) -m mypy

bench: build
	$(PY) bench/probe_cost.py --build $(BUILD)
	$(PY) bench/agent_drain.py --build $(BUILD)

# The platform on this host: backend with embedded PostgreSQL, and a manager (needs root).
run: build
	./scripts/run-platform

clean:
	rm -rf $(BUILD)
