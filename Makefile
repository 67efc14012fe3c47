# Three HTTP/1.1 servers, their tests, and the tools around them.
#
#   make              build ./main (blocking), ./main_async (thread group) and, on Linux,
#                     ./main_epoll (event loop, from tutorial/code/main_epoll.cpp); also
#                     ./first_server, the tutorial's first 50 lines (chapter 2)
#   make run          build and start main_async on 127.0.0.1:8000 (another port: make run PORT=8001)
#   make run-blocking build and start main on 127.0.0.1:8000 (PORT=... too)
#   make run-epoll    build and start main_epoll on 127.0.0.1:8000 (PORT=... too; Linux)
#   make test         install GoogleTest if missing, build and run every test
#   make check        the tests again under ASan+UBSan, then under TSan
#   make soak         is memory flat after 100 000 connections, in main_async and main_epoll?
#                     (tests/soak.sh; SOAK_SERVERS=main_epoll for one, SOAK_ARGS=...)
#   make soak-unreaped  the same on the broken design (threads nobody joins): must fail
#   make tutorial     rewrite the tutorial's code blocks from the source (make test checks them)
#   make fuzz         fuzz the HTTP layer of each server, FUZZ_SECONDS each (needs clang++)
#   make clean
#
# CXX=clang++ works too. OUT is where the servers go, BUILD where the tests go;
# `make check` points both at build/<sanitizer>/.

CXX      ?= g++
OPT      ?= -O2 -g
SANITIZE ?=
OUT      ?= .
BUILD    ?= build
PORT     ?= 8000

SANITIZER_FLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
CXXFLAGS := -std=c++20 $(OPT) -Wall -Wextra -Werror -pthread $(if $(SANITIZE),$(SANITIZER_FLAGS))
TEST_LIBS := -lgtest -lgtest_main -pthread

SERVERS := $(OUT)/main $(OUT)/main_async
# The event-loop step uses epoll, which only Linux has; elsewhere the first two still build.
EPOLL := $(filter Linux,$(shell uname -s))
ifneq ($(EPOLL),)
SERVERS += $(OUT)/main_epoll
else
$(info main_epoll: skipped, the event-loop step needs Linux (epoll); main and main_async build as usual)
endif
UNIT_TESTS := tests/http_blocking_test.cpp tests/http_async_test.cpp tests/source_test.cpp \
	tests/tutorial_code_test.cpp $(if $(EPOLL),tests/http_epoll_test.cpp)
UNIT_DEPS := main.cpp main_async.cpp tutorial/code/main_epoll.cpp tests/http_rules.inc tests/tutorial_code.cpp \
	tests/test_support.hpp
INTEGRATION_TESTS := tests/integration_test.cpp
STRESS_TESTS := tests/stress_test.cpp

.PHONY: all run run-blocking run-epoll tutorial test test-only check soak soak-unreaped fuzz clean ensure-compiler ensure-clang ensure-gtest
.DEFAULT_GOAL := all

all: ensure-compiler $(SERVERS)

$(OUT)/main: main.cpp
	@mkdir -p $(OUT)
	$(CXX) $(CXXFLAGS) -o $@ $<

$(OUT)/main_async: main_async.cpp
	@mkdir -p $(OUT)
	$(CXX) $(CXXFLAGS) -o $@ $<

$(OUT)/main_epoll: tutorial/code/main_epoll.cpp
	@mkdir -p $(OUT)
	$(CXX) $(CXXFLAGS) -o $@ $<

run: all
	./main_async --host 127.0.0.1 --port $(PORT)

run-blocking: all
	./main --host 127.0.0.1 --port $(PORT)

run-epoll: all
	./main_epoll --host 127.0.0.1 --port $(PORT)

# ---- the first server (tutorial chapter 2) ----

# tutorial/code/first_server.cpp: socket, bind, listen, accept, one read, a fixed answer, close.
# `make` builds it beside the others; `make test` runs tests/first_server_test.cpp, which checks
# that it breaks the way chapter 2 says (a split request, a POST body, pipelining, a silent
# client, Ctrl-C and a restart). Plain POSIX: it builds on macOS too; its test is Linux's.
all: $(OUT)/first_server

$(OUT)/first_server: tutorial/code/first_server.cpp
	@mkdir -p $(OUT)
	$(CXX) $(CXXFLAGS) -o $@ $<

$(BUILD)/first_server_tests: tests/first_server_test.cpp tests/test_support.hpp tests/server_tests.hpp
	@mkdir -p $(BUILD)
	$(CXX) $(CXXFLAGS) -o $@ tests/first_server_test.cpp $(TEST_LIBS)

.PHONY: test-first-server
test-first-server: $(OUT)/first_server $(BUILD)/first_server_tests
	SERVER_DIR=$(abspath $(OUT)) $(BUILD)/first_server_tests --gtest_brief=1

test-only: test-first-server

# ---- the tutorial ----

# Every project code block in tutorial/*.md is a named region of the source (// ANCHOR: name).
# `make tutorial` rewrites the blocks from the source; `make test` fails while one differs.
CHAPTERS := $(wildcard tutorial/*.md)

$(BUILD)/tutorial_code: tests/tutorial_code.cpp
	@mkdir -p $(BUILD)
	$(CXX) $(CXXFLAGS) -o $@ $<

tutorial: ensure-compiler $(BUILD)/tutorial_code
	$(BUILD)/tutorial_code --write $(CHAPTERS)

# ---- tests ----

$(BUILD)/unit_tests: $(UNIT_TESTS) $(UNIT_DEPS)
	@mkdir -p $(BUILD)
	$(CXX) $(CXXFLAGS) -DPROJECT_DIR='"$(CURDIR)"' -o $@ $(UNIT_TESTS) $(TEST_LIBS)

$(BUILD)/integration_tests: $(INTEGRATION_TESTS) tests/test_support.hpp tests/server_tests.hpp
	@mkdir -p $(BUILD)
	$(CXX) $(CXXFLAGS) -o $@ $(INTEGRATION_TESTS) $(TEST_LIBS)

# Hostile clients and faults: descriptor exhaustion, slow and vanishing clients, 10 000
# connections, SIGTERM under load.
$(BUILD)/stress_tests: $(STRESS_TESTS) tests/test_support.hpp tests/server_tests.hpp
	@mkdir -p $(BUILD)
	$(CXX) $(CXXFLAGS) -o $@ $(STRESS_TESTS) $(TEST_LIBS)

# The fuzz target without libFuzzer: replays tests/fuzz_corpus (seeds and every input that
# once found a bug) through the HTTP layer of each server, under whatever SANITIZE says.
$(BUILD)/fuzz_replay_blocking: tests/fuzz_http.cpp main.cpp
	@mkdir -p $(BUILD)
	$(CXX) $(CXXFLAGS) -DFUZZ_REPLAY_MAIN -DFUZZ_BLOCKING -o $@ tests/fuzz_http.cpp

$(BUILD)/fuzz_replay_async: tests/fuzz_http.cpp main_async.cpp
	@mkdir -p $(BUILD)
	$(CXX) $(CXXFLAGS) -DFUZZ_REPLAY_MAIN -o $@ tests/fuzz_http.cpp

# The event loop's own target: the same corpus, read in its pieces and whole, must get the
# same answers from main_epoll's request assembly.
$(BUILD)/fuzz_replay_epoll: tests/fuzz_epoll.cpp tutorial/code/main_epoll.cpp
	@mkdir -p $(BUILD)
	$(CXX) $(CXXFLAGS) -DFUZZ_REPLAY_MAIN -o $@ tests/fuzz_epoll.cpp

# The build-along: chapters 3 to 6 have the reader type main.cpp's blocks, in the order shown,
# into a server.cpp of their own (tests/tutorial_code.cpp, "Build-along"). tutorial_code --build
# writes that file as it stands at the end of each chapter; each is built with the chapter's g++
# line and checked by tests/steps_test.cpp. Chapter 6's, the whole blocking server in the order
# the reader typed it, must also pass main's integration tests.
STEPS := 03-tcp-layer 04-request-head 05-body-and-response 06-blocking-server
STEP_SOURCES := $(wildcard tutorial/code/steps/*.cpp)
# clang also warns of constants not used yet (chapters 3 and 4 use few of main's); chapter 3 says so.
STEP_FLAGS := -std=c++20 -Wall -Wextra -Werror $(if $(findstring clang,$(CXX)),-Wno-unused-const-variable)

$(BUILD)/steps/written: $(BUILD)/tutorial_code $(CHAPTERS) main.cpp $(STEP_SOURCES)
	@mkdir -p $(BUILD)/steps
	$(BUILD)/tutorial_code --check --build $(BUILD)/steps $(CHAPTERS) > /dev/null
	@touch $@

$(addprefix $(BUILD)/steps/,$(STEPS)): $(BUILD)/steps/%: $(BUILD)/steps/written
	$(CXX) $(STEP_FLAGS) -o $@ $(BUILD)/steps/$*-server.cpp

$(BUILD)/steps/06-blocking-server.dir/main: $(BUILD)/steps/06-blocking-server
	@mkdir -p $(@D)
	cp $< $@

$(BUILD)/steps_tests: tests/steps_test.cpp tests/test_support.hpp tests/server_tests.hpp
	@mkdir -p $(BUILD)
	$(CXX) $(CXXFLAGS) -o $@ tests/steps_test.cpp $(TEST_LIBS)

.PHONY: steps test-steps
steps: $(addprefix $(BUILD)/steps/,$(STEPS))

test-steps: $(addprefix $(BUILD)/steps/,$(STEPS)) $(BUILD)/steps/06-blocking-server.dir/main $(BUILD)/steps_tests \
		$(BUILD)/integration_tests
	SERVER_DIR=$(abspath $(BUILD)/steps) $(BUILD)/steps_tests --gtest_brief=1
	SERVER_DIR=$(abspath $(BUILD)/steps/06-blocking-server.dir) $(BUILD)/integration_tests --gtest_brief=1 \
		--gtest_filter='*/main'

# Counts heap allocations by interposing malloc, which a sanitizer's own allocator forbids,
# so it is built (and run) only without SANITIZE.
$(BUILD)/alloc_test: tests/alloc_test.cpp main_async.cpp tests/test_support.hpp
	@mkdir -p $(BUILD)
	$(CXX) $(CXXFLAGS) -o $@ tests/alloc_test.cpp $(TEST_LIBS)

$(BUILD)/alloc_test_epoll: tests/alloc_test.cpp tutorial/code/main_epoll.cpp tests/test_support.hpp
	@mkdir -p $(BUILD)
	$(CXX) $(CXXFLAGS) -DALLOC_EPOLL -o $@ tests/alloc_test.cpp $(TEST_LIBS)

TEST_BINARIES := $(if $(SANITIZE),,$(BUILD)/tutorial_code) $(BUILD)/unit_tests $(BUILD)/integration_tests $(BUILD)/stress_tests \
	$(BUILD)/fuzz_replay_blocking $(BUILD)/fuzz_replay_async $(if $(EPOLL),$(BUILD)/fuzz_replay_epoll) \
	$(if $(SANITIZE),,$(BUILD)/alloc_test $(if $(EPOLL),$(BUILD)/alloc_test_epoll))

# A test binary built on its own (chapter 6 has the reader build the integration tests) still
# gets GoogleTest installed first.
$(BUILD)/unit_tests $(BUILD)/integration_tests $(BUILD)/stress_tests $(BUILD)/alloc_test $(BUILD)/alloc_test_epoll \
	$(BUILD)/first_server_tests $(BUILD)/exercises_test $(BUILD)/steps_tests: | ensure-gtest

test: ensure-compiler ensure-gtest
	@$(MAKE) --no-print-directory test-only

# The chapters do not change with the build, so the sanitizer passes do not check them again.
test-only: $(SERVERS) $(TEST_BINARIES)
	$(if $(SANITIZE),,$(BUILD)/tutorial_code --check --coverage $(CHAPTERS))
	$(BUILD)/unit_tests --gtest_brief=1
	$(if $(SANITIZE),,$(BUILD)/alloc_test --gtest_brief=1)
	$(if $(SANITIZE),,$(if $(EPOLL),$(BUILD)/alloc_test_epoll --gtest_brief=1))
	$(BUILD)/fuzz_replay_blocking tests/fuzz_corpus
	$(BUILD)/fuzz_replay_async tests/fuzz_corpus
	$(if $(EPOLL),$(BUILD)/fuzz_replay_epoll tests/fuzz_corpus)
	SERVER_DIR=$(abspath $(OUT)) $(BUILD)/integration_tests --gtest_brief=1
	SERVER_DIR=$(abspath $(OUT)) $(BUILD)/stress_tests --gtest_brief=1

# A sanitizer report in a server makes it exit non-zero, which the integration tests check.
check: ensure-compiler ensure-gtest
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		$(MAKE) --no-print-directory test-only SANITIZE=address,undefined OUT=build/asan BUILD=build/asan
	# atexit_sleep_ms=0: ThreadSanitizer sleeps 1 s at exit while other threads live, to catch
	# races at exit. Connection threads are detached, and the last may still be ending (past
	# their last touch of shared state) as main returns; the shutdown tests time that exit.
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:atexit_sleep_ms=0 \
		$(MAKE) --no-print-directory test-only SANITIZE=thread OUT=build/tsan BUILD=build/tsan

# ---- exercises: the tutorial's solutions, applied, built and checked ----

# Each chapter's exercise has its solution in tutorial/exercises/: a patch to one server file
# (for `patch -p1` from here) or a new file. `make test` applies each patch to a copy in
# $(BUILD)/exercises, builds every solution, and runs tests/exercises_test.cpp, which starts
# them and checks the result each chapter promises (and, where cheap, that the unpatched server
# does not show it). Not under SANITIZE: one check measures VmSize, and `make check` is long.
EXERCISE_DIR := $(BUILD)/exercises
# The checks need behaviour, not speed: -O0 without -g builds in about half the time of -O2 -g.
EXERCISE_FLAGS := -std=c++20 -O0 -Wall -Wextra -Werror -pthread
EXERCISES_MAIN := 03-peer-address 04-field-count 05-not-found 06-exit-after
EXERCISES_ASYNC := 07-unreaped 08-max-requests 09-buffers-8192 09-batched-log
EXERCISES_EPOLL := $(if $(EPOLL),11-sleeping-handler 12-worker-counts 13-reuseport)
# Chapter 13 has the reader apply chapter 12's counts too, to see the shares even out: both at once.
EXERCISES_BOTH := $(if $(EPOLL),12-13-counts-and-reuseport)
EXERCISE_PATCHED := $(addprefix $(EXERCISE_DIR)/,$(EXERCISES_MAIN) $(EXERCISES_ASYNC) $(EXERCISES_EPOLL) $(EXERCISES_BOTH))

# Checked first as the reader applies it (patch -p1 --dry-run, here), then written to a copy.
# No fuzz: a patch whose context has changed is refreshed, not guessed at (nor does git apply).
define apply_exercise
@mkdir -p $(@D)
@patch -p1 --dry-run --fuzz=0 -s < $< && patch --fuzz=0 -s -r - -o $@ $(word 2,$^) < $< \
	|| { rm -f $@; echo "$<: no longer applies to $(word 2,$^); refresh it as tutorial/exercises/README.md says" >&2; exit 1; }
endef

$(EXERCISES_MAIN:%=$(EXERCISE_DIR)/%.cpp): $(EXERCISE_DIR)/%.cpp: tutorial/exercises/%.patch main.cpp | ensure-patch
	$(apply_exercise)

$(EXERCISES_ASYNC:%=$(EXERCISE_DIR)/%.cpp): $(EXERCISE_DIR)/%.cpp: tutorial/exercises/%.patch main_async.cpp | ensure-patch
	$(apply_exercise)

$(EXERCISES_EPOLL:%=$(EXERCISE_DIR)/%.cpp): $(EXERCISE_DIR)/%.cpp: tutorial/exercises/%.patch tutorial/code/main_epoll.cpp | ensure-patch
	$(apply_exercise)

$(EXERCISES_BOTH:%=$(EXERCISE_DIR)/%.cpp): $(EXERCISE_DIR)/12-worker-counts.cpp tutorial/exercises/13-reuseport.patch | ensure-patch
	@patch --fuzz=0 -s -r - -o $@ $< < $(word 2,$^) \
		|| { rm -f $@; echo "$(word 2,$^) no longer applies after 12-worker-counts.patch, as chapter 13 has it" >&2; exit 1; }

$(EXERCISE_PATCHED): %: %.cpp
	$(CXX) $(EXERCISE_FLAGS) -o $@ $<

$(EXERCISE_DIR)/10-one-connection-client: tutorial/exercises/10-one-connection-client.cpp
	@mkdir -p $(@D)
	$(CXX) $(EXERCISE_FLAGS) -o $@ $<

$(BUILD)/exercises_test: tests/exercises_test.cpp tests/test_support.hpp tests/server_tests.hpp
	@mkdir -p $(BUILD)
	$(CXX) $(EXERCISE_FLAGS) -DEXERCISES_EPOLL=$(if $(EPOLL),1,0) -o $@ $< $(TEST_LIBS)

.PHONY: test-exercises ensure-patch
test-exercises: $(SERVERS) $(EXERCISE_PATCHED) $(EXERCISE_DIR)/10-one-connection-client $(BUILD)/exercises_test
	SERVER_DIR=$(abspath $(OUT)) EXERCISE_DIR=$(abspath $(EXERCISE_DIR)) $(BUILD)/exercises_test --gtest_brief=1

test-only: $(if $(SANITIZE),,test-exercises test-steps)

ensure-patch:
	@command -v patch >/dev/null 2>&1 || tests/ensure-packages.sh patch

# ---- soak: memory and threads under sustained load ----

# The load generator tests/soak.sh drives.
$(BUILD)/load_client: tests/load_client.cpp
	@mkdir -p $(BUILD)
	$(CXX) $(CXXFLAGS) -o $@ $<

# The broken design, for comparison only: main_async.cpp with its threads created joinable
# instead of detached, and nobody ever joining them. Each one's kernel task ends, but its
# stack (and what the C library keeps with it) stays, so memory grows with every connection
# ever served. The substitution must match exactly once.
$(BUILD)/main_async_unreaped.cpp: main_async.cpp
	@mkdir -p $(BUILD)
	@test "$$(grep -c 'PTHREAD_CREATE_DETACHED' main_async.cpp)" = 1 \
		|| { echo "main_async.cpp: expected PTHREAD_CREATE_DETACHED exactly once" >&2; exit 1; }
	sed 's/PTHREAD_CREATE_DETACHED/PTHREAD_CREATE_JOINABLE/' main_async.cpp > $@

$(BUILD)/main_async_unreaped: $(BUILD)/main_async_unreaped.cpp
	$(CXX) $(CXXFLAGS) -o $@ $<

# `make soak` must pass: the memory of each of SOAK_SERVERS stays flat (one after the other, so
# that neither measures the other's load; one failing does not skip the next). `make
# soak-unreaped` must fail: the same measurement on the broken design, which shows that the
# soak catches a leak. Each writes its samples to $(BUILD)/soak-*.csv, for the tutorial's RSS
# curves. One server: make soak SOAK_SERVERS=main_epoll.
SOAK_ARGS ?=
SOAK_SERVERS ?= main_async main_epoll
soak: ensure-compiler $(addprefix $(OUT)/,$(SOAK_SERVERS)) $(BUILD)/load_client
	@status=0; for server in $(SOAK_SERVERS); do \
	  tests/soak.sh --server $(OUT)/$$server --load-client $(BUILD)/load_client \
	    --csv $(BUILD)/soak-$$server.csv $(SOAK_ARGS) || status=1; \
	done; exit $$status

soak-unreaped: ensure-compiler $(BUILD)/main_async_unreaped $(BUILD)/load_client
	@if tests/soak.sh --server $(BUILD)/main_async_unreaped --load-client $(BUILD)/load_client \
		--connections 20000 --csv $(BUILD)/soak-main_async_unreaped.csv $(SOAK_ARGS); then \
	  echo "soak-unreaped: the broken design passed the soak: the soak no longer catches a leak" >&2; exit 1; \
	else echo "soak-unreaped: failed, as the broken design must"; fi

# ---- fuzz: the HTTP layer of each server under libFuzzer ----

# tests/fuzz_http.cpp, built once per server file, and main_epoll's tests/fuzz_epoll.cpp
# (its own reading, in pieces and whole; saved as fuzz_http_epoll). Each run starts from
# tests/fuzz_corpus and keeps what it finds new in build/fuzz/corpus_*; a crash is saved as
# build/fuzz/<server>-crash-* (replay it: build/fuzz/fuzz_http_<server> FILE).
FUZZ_CXX ?= clang++
FUZZ_SECONDS ?= 60
FUZZ_DIR := build/fuzz
FUZZ_FLAGS := -std=c++20 -O1 -g -Wall -Wextra -Werror -pthread \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_SERVERS := blocking async $(if $(EPOLL),epoll)
FUZZ_TARGETS := $(addprefix $(FUZZ_DIR)/fuzz_http_,$(FUZZ_SERVERS))

$(FUZZ_DIR)/fuzz_http_blocking: tests/fuzz_http.cpp main.cpp
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -DFUZZ_BLOCKING -o $@ tests/fuzz_http.cpp

$(FUZZ_DIR)/fuzz_http_async: tests/fuzz_http.cpp main_async.cpp
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -o $@ tests/fuzz_http.cpp

$(FUZZ_DIR)/fuzz_http_epoll: tests/fuzz_epoll.cpp tutorial/code/main_epoll.cpp
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -o $@ tests/fuzz_epoll.cpp

fuzz: ensure-clang $(FUZZ_TARGETS)
	@for server in $(FUZZ_SERVERS); do \
	  mkdir -p $(FUZZ_DIR)/corpus_$$server; \
	  echo "fuzzing the HTTP layer of $$server for $(FUZZ_SECONDS) s (log: $(FUZZ_DIR)/$$server.log)"; \
	  $(FUZZ_DIR)/fuzz_http_$$server -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
	    -dict=tests/fuzz_http.dict -artifact_prefix=$(FUZZ_DIR)/$$server- \
	    $(FUZZ_DIR)/corpus_$$server tests/fuzz_corpus > $(FUZZ_DIR)/$$server.log 2>&1 \
	    || { tail -n 60 $(FUZZ_DIR)/$$server.log; exit 1; }; \
	  grep -E '(INITED|DONE) ' $(FUZZ_DIR)/$$server.log | sed 's/^/  /'; \
	  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' $(FUZZ_DIR)/$$server.log \
	    | sed 's/^/  /'; \
	done

# ---- what a fresh machine is missing ----

ensure-compiler:
	@command -v $(CXX) >/dev/null 2>&1 || tests/ensure-packages.sh g++ make

ensure-clang:
	@command -v $(FUZZ_CXX) >/dev/null 2>&1 || tests/ensure-packages.sh clang

ensure-gtest:
	@test -f /usr/include/gtest/gtest.h || test -f /usr/local/include/gtest/gtest.h \
		|| tests/ensure-packages.sh libgtest-dev

clean:
	rm -rf main main_async main_epoll first_server build
