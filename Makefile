# Parameter Golf trainer: Mamba-3 + attention hybrid in CUDA C++.
#   make            build ./train (nvcc, sm_90a) and the CPU test binary
#   make test       CPU tests (PyTorch-made fixtures) + nvcc compile of every .cu
#   make test-gpu   GPU kernels against the CPU reference (needs a GPU)
#   make data       offline corpus -> tokenizer + shards (see data/README section of README.md)
#   make deps       apt packages a fresh Debian box needs (idempotent)

CXX      ?= g++
NVCC     ?= nvcc
PYTHON   ?= /usr/bin/python3
BUILD    ?= build
# No -ffast-math anywhere: the CPU code is the reference (style rule 6).
CXXFLAGS ?= -O2 -g -std=c++17 -Wall -Wextra -Wno-unused-parameter -fopenmp
GENCODE  ?= -gencode=arch=compute_90a,code=sm_90a
NVFLAGS  ?= -O3 -std=c++17 $(GENCODE) -lineinfo --expt-relaxed-constexpr -Xcompiler -fopenmp \
            -Xcompiler -Wall -Xcompiler -Wno-unused-parameter
INCLUDES := -I.
LDLIBS_GPU := -lcublasLt -lcublas -lnccl -llzma -lgomp
LDLIBS_CPU := -llzma

# CPU sources shared by train, the tests and the tools (plain C++: references, data, config).
CPU_SRC  := $(wildcard model/*.cpp data/*.cpp optim/*.cpp quant/*.cpp eval/*.cpp)
CPU_OBJ  := $(CPU_SRC:%.cpp=$(BUILD)/%.o)
# CUDA sources: every .cu outside tests/ and bench/ is part of the trainer.
CU_SRC   := $(wildcard model/*.cu optim/*.cu quant/*.cu eval/*.cu)
CU_OBJ   := $(CU_SRC:%.cu=$(BUILD)/%.cu.o)
TEST_SRC := $(wildcard tests/*.cpp)
TEST_OBJ := $(TEST_SRC:%.cpp=$(BUILD)/%.o)
GPU_TEST_SRC := $(wildcard tests/gpu/*.cu)
GPU_TEST_OBJ := $(GPU_TEST_SRC:%.cu=$(BUILD)/%.cu.o)
# CPU tools: each tools/<name>.cpp is a binary build/<name> (inspect, quant_synth).
TOOL_SRC := $(wildcard tools/*.cpp)
TOOLS    := $(TOOL_SRC:tools/%.cpp=$(BUILD)/%)

HAVE_NVCC := $(shell command -v $(NVCC) >/dev/null 2>&1 && echo 1)

# The commit train logs and writes into its CSV and checkpoints ("-dirty": uncommitted changes).
# build/git_hash changes only when the hash does, and train.cu.o depends on it.
GIT_HASH := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
$(shell mkdir -p $(BUILD) && (echo '$(GIT_HASH)' | cmp -s - $(BUILD)/git_hash || echo '$(GIT_HASH)' > $(BUILD)/git_hash))
$(BUILD)/train.cu.o: $(BUILD)/git_hash
$(BUILD)/train.cu.o: NVFLAGS += -DGIT_HASH='"$(GIT_HASH)"'

.DEFAULT_GOAL := all
.PHONY: all test test-cpu test-gpu compile-cuda fixtures data deps clean
all: $(if $(HAVE_NVCC),train,) $(BUILD)/test_cpu $(TOOLS)
	@$(if $(HAVE_NVCC),echo "✓ nvcc: built ./train",echo "✗ nvcc not found: ./train not built (CPU tests only)")

$(BUILD)/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) $(INCLUDES) -MMD -MP -c $< -o $@

$(BUILD)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) $(INCLUDES) -MMD -MP -c $< -o $@

# The CPU objects are compiled by g++ and linked into train as they are.
train: $(BUILD)/train.cu.o $(CU_OBJ) $(CPU_OBJ)
	$(NVCC) $(NVFLAGS) $^ -o $@ $(LDLIBS_GPU)

$(BUILD)/test_cpu: $(TEST_OBJ) $(CPU_OBJ)
	$(CXX) $(CXXFLAGS) $^ -o $@ $(LDLIBS_CPU)

$(TOOLS): $(BUILD)/%: $(BUILD)/tools/%.o $(CPU_OBJ)
	$(CXX) $(CXXFLAGS) $^ -o $@ $(LDLIBS_CPU)

$(BUILD)/test_gpu: $(GPU_TEST_OBJ) $(CU_OBJ) $(CPU_OBJ)
	$(NVCC) $(NVFLAGS) $^ -o $@ $(LDLIBS_GPU)

# Reference outputs: PyTorch (float64) on seeded random inputs, one file per test case.
FIXTURE_STAMP := $(BUILD)/fixtures/.stamp
$(FIXTURE_STAMP): $(wildcard tools/ref/*.py)
	@mkdir -p $(dir $@)
	$(PYTHON) tools/ref/make_fixtures.py $(BUILD)/fixtures
	@touch $@
fixtures: $(FIXTURE_STAMP)

compile-cuda: $(if $(HAVE_NVCC),$(BUILD)/train.cu.o $(CU_OBJ) $(GPU_TEST_OBJ),)
	@$(if $(HAVE_NVCC),echo "✓ nvcc compiled every .cu",echo "✗ nvcc not found: CUDA sources not compiled")

test: compile-cuda $(BUILD)/test_cpu $(TOOLS) $(FIXTURE_STAMP)
	FIXTURES=$(BUILD)/fixtures $(BUILD)/test_cpu

test-gpu: $(BUILD)/test_gpu
	$(BUILD)/test_gpu

# Kernel timings at the production shape (GPU); bench/torch_ops.py times the same ops in PyTorch.
$(BUILD)/bench_gpu: $(BUILD)/bench/bench_gpu.cu.o $(CU_OBJ) $(CPU_OBJ)
	$(NVCC) $(NVFLAGS) $^ -o $@ $(LDLIBS_GPU)
# The scan alone, side by side with upstream's Triton kernels: bench/scan.sh build/bench/scan_bench
$(BUILD)/bench/scan_bench: $(BUILD)/bench/scan_bench.cu.o $(BUILD)/model/mamba3_scan.cu.o
	$(NVCC) $(NVFLAGS) $^ -o $@
.PHONY: bench
bench: $(BUILD)/bench_gpu $(BUILD)/bench/scan_bench
-include $(BUILD)/bench/bench_gpu.cu.d $(BUILD)/bench/scan_bench.cu.d

data:
	tools/make_data.sh

deps:
	tools/deps.sh

clean:
	rm -rf $(BUILD) train

-include $(CPU_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(TOOL_SRC:%.cpp=$(BUILD)/%.d) $(CU_OBJ:.o=.d) $(GPU_TEST_OBJ:.o=.d) $(BUILD)/train.cu.d
