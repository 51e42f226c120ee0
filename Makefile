# jobgate build. `make` builds build/jobgate with warnings as errors; `make run` and
# `make test` first install any missing Debian packages (scripts/install-deps.sh).

BUILD    ?= build
CC       ?= cc
OPT      ?= -O2
SANITIZE ?=

VERSION := 0.1.0

CFLAGS  := -std=c11 -D_GNU_SOURCE -DH2O_USE_LIBUV=1 -DJOBGATE_VERSION=\"$(VERSION)\" -Igateway \
           -Wall -Wextra -Wshadow -Wformat=2 -Werror -g $(OPT) $(SANITIZE) -MMD -MP
LDFLAGS := $(SANITIZE)
LDLIBS  := -lh2o -luv -lssl -lcrypto -lhiredis -ljwt -ljansson -lsodium -lpcre2-8 -lpthread

SOURCES      := $(wildcard gateway/*.c)
OBJECTS      := $(SOURCES:gateway/%.c=$(BUILD)/%.o)
LIB_OBJECTS  := $(filter-out $(BUILD)/main.o,$(OBJECTS))
UNIT_TESTS   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_*.c))

.PHONY: all deps run test unit-tests asan bench vectors format format-check clean

all: $(BUILD)/jobgate

$(BUILD)/jobgate: $(OBJECTS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: gateway/%.c | $(BUILD)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJECTS) | $(BUILD)/tests
	$(CC) $(CFLAGS) -Wno-unused-parameter -o $@ $< $(LIB_OBJECTS) $(LDFLAGS) $(LDLIBS) -lcmocka

$(BUILD)/auth_bench: bench/auth_bench.c $(LIB_OBJECTS)
	$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJECTS) $(LDFLAGS) $(LDLIBS)

# Runs the JSON Schema test suite: $(BUILD)/schema_suite ../shared/json-schema-suite/draft2020-12
$(BUILD)/schema_suite: tests/schema_suite.c $(LIB_OBJECTS) | $(BUILD)
	$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJECTS) $(LDFLAGS) $(LDLIBS)

$(BUILD)/schema_bench: bench/schema_bench.c $(LIB_OBJECTS) | $(BUILD)
	$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJECTS) $(LDFLAGS) $(LDLIBS)

$(BUILD)/envelope_bench: bench/envelope_bench.c $(LIB_OBJECTS) | $(BUILD)
	$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJECTS) $(LDFLAGS) $(LDLIBS)

# Writes the shared envelope test vectors that every worker kit checks.
$(BUILD)/make_vectors: tests/vectors/make_vectors.c $(LIB_OBJECTS) | $(BUILD)
	$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJECTS) $(LDFLAGS) $(LDLIBS)

vectors: $(BUILD)/make_vectors
	$(BUILD)/make_vectors >tests/vectors/envelope-v1.json

$(BUILD) $(BUILD)/tests:
	mkdir -p $@

unit-tests: $(UNIT_TESTS) $(BUILD)/schema_suite

deps:
	@scripts/install-deps.sh

run: deps
	@$(MAKE) --no-print-directory all
	@scripts/run.sh

test:
	scripts/install-deps.sh test
	@$(MAKE) --no-print-directory all unit-tests
	scripts/test.sh $(BUILD)

# The whole suite again under AddressSanitizer and UndefinedBehaviorSanitizer.
asan:
	scripts/install-deps.sh test
	$(MAKE) BUILD=build/asan OPT=-O1 \
	    SANITIZE="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	    all unit-tests
	ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	    scripts/test.sh build/asan

bench: deps
	@$(MAKE) --no-print-directory all $(BUILD)/auth_bench $(BUILD)/schema_bench \
	    $(BUILD)/envelope_bench
	$(BUILD)/auth_bench
	$(BUILD)/schema_bench
	$(BUILD)/envelope_bench
	bench/run.sh

format:
	clang-format -i gateway/*.c gateway/*.h tests/unit/*.c tests/unit/*.h \
	    tests/vectors/*.c bench/*.c

format-check:
	clang-format --dry-run --Werror gateway/*.c gateway/*.h tests/unit/*.c tests/unit/*.h \
	    tests/vectors/*.c bench/*.c

clean:
	rm -rf build

-include $(OBJECTS:.o=.d)
