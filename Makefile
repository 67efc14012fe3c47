# Two HTTP/1.1 servers, their tests, and the tools around them.
#
#   make              build ./main (blocking) and ./main_async (thread group)
#   make run          build and start main_async on 127.0.0.1:8000
#   make run-blocking build and start main on 127.0.0.1:8000
#   make test         install GoogleTest if missing, build and run every test
#   make check        the tests again under ASan+UBSan, then under TSan
#   make clean
#
# CXX=clang++ works too. OUT is where the servers go, BUILD where the tests go;
# `make check` points both at build/<sanitizer>/.

CXX      ?= g++
OPT      ?= -O2 -g
SANITIZE ?=
OUT      ?= .
BUILD    ?= build

# Sanitizer instrumentation makes g++ 12 report false -Wmaybe-uninitialized inside std::regex
# and std::function (used by the tests), so sanitizer builds leave that one warning out.
SANITIZER_FLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -Wno-maybe-uninitialized
CXXFLAGS := -std=c++20 $(OPT) -Wall -Wextra -Werror -pthread $(if $(SANITIZE),$(SANITIZER_FLAGS))
TEST_LIBS := -lgtest -lgtest_main -pthread

SERVERS := $(OUT)/main $(OUT)/main_async
UNIT_TESTS := tests/http_blocking_test.cpp tests/http_async_test.cpp tests/source_test.cpp
UNIT_DEPS := main.cpp main_async.cpp tests/http_rules.inc
INTEGRATION_TESTS := tests/integration_test.cpp

.PHONY: all run run-blocking test test-only check clean ensure-compiler ensure-gtest
.DEFAULT_GOAL := all

all: ensure-compiler $(SERVERS)

$(OUT)/main: main.cpp
	@mkdir -p $(OUT)
	$(CXX) $(CXXFLAGS) -o $@ $<

$(OUT)/main_async: main_async.cpp
	@mkdir -p $(OUT)
	$(CXX) $(CXXFLAGS) -o $@ $<

run: all
	./main_async --host 127.0.0.1 --port 8000

run-blocking: all
	./main --host 127.0.0.1 --port 8000

# ---- tests ----

$(BUILD)/unit_tests: $(UNIT_TESTS) $(UNIT_DEPS)
	@mkdir -p $(BUILD)
	$(CXX) $(CXXFLAGS) -DPROJECT_DIR='"$(CURDIR)"' -o $@ $(UNIT_TESTS) $(TEST_LIBS)

$(BUILD)/integration_tests: $(INTEGRATION_TESTS) tests/test_support.hpp
	@mkdir -p $(BUILD)
	$(CXX) $(CXXFLAGS) -o $@ $(INTEGRATION_TESTS) $(TEST_LIBS)

# Counts heap allocations by interposing malloc, which a sanitizer's own allocator forbids,
# so it is built (and run) only without SANITIZE.
$(BUILD)/alloc_test: tests/alloc_test.cpp main_async.cpp
	@mkdir -p $(BUILD)
	$(CXX) $(CXXFLAGS) -o $@ tests/alloc_test.cpp $(TEST_LIBS)

TEST_BINARIES := $(BUILD)/unit_tests $(BUILD)/integration_tests $(if $(SANITIZE),,$(BUILD)/alloc_test)

test: ensure-compiler ensure-gtest
	@$(MAKE) --no-print-directory test-only

test-only: $(SERVERS) $(TEST_BINARIES)
	$(BUILD)/unit_tests --gtest_brief=1
	$(if $(SANITIZE),,$(BUILD)/alloc_test --gtest_brief=1)
	SERVER_DIR=$(abspath $(OUT)) $(BUILD)/integration_tests --gtest_brief=1

# A sanitizer report in a server makes it exit non-zero, which the integration tests check.
check: ensure-compiler ensure-gtest
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		$(MAKE) --no-print-directory test-only SANITIZE=address,undefined OUT=build/asan BUILD=build/asan
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
		$(MAKE) --no-print-directory test-only SANITIZE=thread OUT=build/tsan BUILD=build/tsan

# ---- what a fresh machine is missing ----

ensure-compiler:
	@command -v $(CXX) >/dev/null 2>&1 || tests/ensure-packages.sh g++ make

ensure-gtest:
	@test -f /usr/include/gtest/gtest.h || test -f /usr/local/include/gtest/gtest.h \
		|| tests/ensure-packages.sh libgtest-dev

clean:
	rm -rf main main_async build
