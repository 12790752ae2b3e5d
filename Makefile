# xbar -- build, test, benchmark.   `make` builds build/libxbar.a and build/xbar.
#   make test     install missing Debian packages, build, run the whole test suite
#   make demo     install, build, train a small CIFAR-10 model for a few minutes, evaluate it
#   make asan     the test suite under AddressSanitizer + UBSan
#   make fuzz     libFuzzer harnesses of the file parsers (needs clang)
#   make bench    benchmarks against PyTorch (slow; not part of test)
# Knobs: NO_OMP=1 (no OpenMP), NATIVE=0 (no -march=native), O=-O2 ...
SHELL := /bin/bash
CC ?= cc
O ?= -O3
NATIVE ?= 1
BUILD ?= build
PY ?= /usr/bin/python3

BLAS_DIR := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/openblas-openmp /usr/lib/aarch64-linux-gnu/openblas-openmp))
BLAS_INC := $(firstword $(wildcard /usr/include/x86_64-linux-gnu/openblas-openmp /usr/include/aarch64-linux-gnu/openblas-openmp))
ifeq ($(BLAS_DIR),)
  BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
  BLAS_LIBS := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
else
  BLAS_CFLAGS := -I$(BLAS_INC)
  BLAS_LIBS := -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR) -lopenblas
endif

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter -Wno-missing-field-initializers \
        -Werror=implicit-function-declaration -Werror=return-type
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -g $(WARN) -Iinclude -Isrc $(BLAS_CFLAGS) -I/usr/include/cjson \
               -I/usr/include/suitesparse
ifneq ($(NO_OMP),1)
  CFLAGS_BASE += -fopenmp
  LDOMP := -fopenmp
endif
ifeq ($(NATIVE),1)
  ARCH := -march=native
endif
CFLAGS ?= $(O) $(ARCH)
ALL_CFLAGS := $(CFLAGS_BASE) $(CFLAGS) $(EXTRA_CFLAGS)
LIBS := $(BLAS_LIBS) -lcjson -lcholmod -lklu -lm $(LDOMP)

SRC := $(sort $(wildcard src/*/*.c))
OBJ := $(SRC:%.c=$(BUILD)/%.o)
CLI_SRC := $(sort $(wildcard cli/*.c))
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
# helper programs the Python reference tests drive (not run by themselves)
TOOL_SRC := $(sort $(wildcard tests/tool_*.c))
TOOL_BIN := $(TOOL_SRC:tests/%.c=$(BUILD)/tests/%)
ZOO_CFG := $(sort $(wildcard configs/models/*.cfg))

.PHONY: all test check demo asan fuzz bench deps clean
all: $(BUILD)/xbar

deps:
	@bash scripts/install-deps.sh

$(BUILD)/%.o: %.c $(wildcard include/*.h) $(wildcard src/*/*.h) | $(BUILD)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# zoo configs are compiled into the library
$(BUILD)/zoo_data.c: $(ZOO_CFG) scripts/embed-configs.sh | $(BUILD)
	@bash scripts/embed-configs.sh $(ZOO_CFG) > $@
$(BUILD)/zoo_data.o: $(BUILD)/zoo_data.c
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -c $< -o $@

$(BUILD)/libxbar.a: $(OBJ) $(BUILD)/zoo_data.o
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/xbar: $(CLI_OBJ) $(BUILD)/libxbar.a
	$(CC) $(ALL_CFLAGS) $(CLI_OBJ) $(BUILD)/libxbar.a $(LIBS) -o $@

$(BUILD)/tests/tool_%: tests/tool_%.c $(BUILD)/libxbar.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes $< $(BUILD)/libxbar.a $(LIBS) -o $@

$(BUILD)/tests/%: tests/%.c tests/testutil.h $(BUILD)/libxbar.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes $< $(BUILD)/libxbar.a $(LIBS) -lcmocka -o $@

$(BUILD):
	@mkdir -p $(BUILD)

# The whole suite: C unit tests (cmocka), the PyTorch and ngspice reference tests, then the C unit
# tests again under AddressSanitizer + UBSan (SANITIZE=0 skips that pass).
SANITIZE ?= 1
test: deps
	@$(MAKE) --no-print-directory all $(TEST_BIN) $(TOOL_BIN)
	@bash tests/run_all.sh $(BUILD)
ifeq ($(SANITIZE),1)
	@echo "== the C tests again under AddressSanitizer + UBSan"
	@$(MAKE) --no-print-directory asan
endif

check: test

demo: deps
	@$(MAKE) --no-print-directory all
	@bash scripts/demo.sh

asan:
	@$(MAKE) --no-print-directory BUILD=build-asan O=-O1 NATIVE=0 \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  build-asan/xbar $(TEST_SRC:tests/%.c=build-asan/tests/%) $(TOOL_SRC:tests/%.c=build-asan/tests/%)
	@XB_SANITIZE=1 bash tests/run_all.sh build-asan

fuzz:
	@bash tests/fuzz/run.sh

bench: deps all
	@bash bench/run.sh

clean:
	rm -rf build build-asan build-fuzz
