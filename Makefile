# Shield — edge caching proxy / origin shield.
#
#   make deps    install Debian/npm dependencies (idempotent, quiet when present)
#   make         build build/shield (jemalloc) and build/shieldctl
#   make test    deps + build + unit tests + integration tests, then the same
#                unit and integration tests again on the ASan/UBSan build
#   make run     deps + build + demo (S3 emulator with sample books + Shield)
#   make soak    the disk cache's kill -9 loop, 500 iterations (SHIELD_KILL_ITERATIONS)
#   make cachesim  eviction policies on a Zipf e-book trace (bench/README.md)
#   make bench   Shield vs nginx proxy_cache, every scenario (bench/HARNESS.md)
#   make asan    build build/asan/shield (libc malloc, ASan + UBSan)
#   make fuzz    libFuzzer (clang-14) on every tests/fuzz harness, FUZZ_SECONDS each
#   make format  clang-format the tree;  make clean

VERSION    := 0.1.0
BUILD      ?= build
SAN        ?= 0
CC         ?= cc
LLHTTP_DIR ?= /usr/share/llhttp
LLHTTP_INC ?= /usr/share/include/llhttp
PYTHON     ?= /usr/bin/python3
PYTEST_ARGS ?=

WARN   := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wformat=2 -Wvla
CPPFLAGS := -Iinclude -I$(LLHTTP_INC) -D_GNU_SOURCE -DSHIELD_VERSION='"$(VERSION)"'
LIBS   := -levent_openssl -levent_pthreads -levent -lcurl -lconfig -lmaxminddb -lbrotlienc \
          -lssl -lcrypto -lz -lm -pthread

ifeq ($(SAN),1)
  OPT      := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  CPPFLAGS += -DSHIELD_MALLOC_LIBC
  LDSAN    := -fsanitize=address,undefined
else
  OPT      := -O2 -g
  LIBS     += -ljemalloc
  LDSAN    :=
endif
CFLAGS ?=
override CFLAGS += -std=gnu11 -pthread $(OPT) $(WARN)

SRC       := $(sort $(wildcard proxy/*.c proxy/cache/*.c modules/*.c))
MAIN_SRC  := proxy/main.c
LIB_SRC   := $(filter-out $(MAIN_SRC),$(SRC))
OBJ_DIR   := $(BUILD)/obj
LIB_OBJ   := $(LIB_SRC:%.c=$(OBJ_DIR)/%.o)
LLHTTP_OBJ := $(OBJ_DIR)/llhttp/llhttp.o $(OBJ_DIR)/llhttp/api.o $(OBJ_DIR)/llhttp/http.o
UNIT_SRC  := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
# Fuzz harnesses (libFuzzer entry point) replayed over their checked-in corpus
# by a small driver, so `make test` runs them with gcc and under ASan.
FUZZ_SRC  := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_NAMES := $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%)
FUZZ_BIN  := $(FUZZ_NAMES:%=$(BUILD)/fuzz/replay_%)
FUZZ_SECONDS ?= 60

.PHONY: all deps test unit integration asan run soak clean format check-format fuzz-replay fuzz \
        fuzz-diff
all: $(BUILD)/shield $(BUILD)/shieldctl

$(BUILD)/shield: $(OBJ_DIR)/proxy/main.o $(LIB_OBJ) $(LLHTTP_OBJ)
	$(CC) $(CFLAGS) $(LDSAN) -o $@ $^ $(LIBS)

# The admin API's command-line client: standalone, libcurl only.
$(BUILD)/shieldctl: tools/shieldctl.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDSAN) -o $@ $< -lcurl

$(OBJ_DIR)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

# llhttp is compiled from the sources Debian's node-llhttp ships; it is
# generated code, so it gets the optimisation flags but not our warning set.
$(OBJ_DIR)/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) -I$(LLHTTP_INC) -std=gnu11 $(OPT) -w -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJ) $(LLHTTP_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDSAN) -o $@ $^ $(LIBS) -lcmocka

# A harness may stand in for a library object (fuzz_conn's stub origin
# replaces the curl client): FUZZ_STUB_<name> lists what it replaces.
FUZZ_STUB_conn := $(OBJ_DIR)/proxy/origin.o
fuzz_lib = $(filter-out $(FUZZ_STUB_$(1)),$(LIB_OBJ))
.SECONDEXPANSION:

$(BUILD)/fuzz/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $$(call fuzz_lib,$$*) $(LLHTTP_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDSAN) -o $@ $^ $(LIBS)

-include $(shell find $(OBJ_DIR) -name '*.d' 2>/dev/null)

# ---- dependencies -----------------------------------------------------------
DEB_PKGS := gcc make pkg-config libevent-dev libssl-dev libcurl4-openssl-dev \
            libjemalloc-dev libmaxminddb-dev node-llhttp libconfig-dev zlib1g-dev \
            libbrotli-dev libcmocka-dev python3 python3-pytest python3-botocore python3-h11 \
            awscli curl openssl procps clang-format clang-14 libclang-rt-14-dev \
            testssl.sh libmaxmind-db-writer-perl goaccess prometheus
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# $(call apt_ensure,target,packages[,shell that may add to $$missing]): install
# the Debian packages that are missing, quietly when none is.
define apt_ensure
@missing=$$(for p in $(2); do \
    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
$(3) \
if [ -n "$$(echo $$missing)" ]; then \
    echo "make $(1): installing$$(echo ' '$$missing)"; \
    $(SUDO) apt-get update -qq && \
    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
fi
endef

deps:
	$(call apt_ensure,deps,$(DEB_PKGS),command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm";)
	@[ -x tests/node_modules/.bin/s3rver ] || { echo "make deps: installing s3rver (npm)"; \
	    cd tests && npm ci --silent --no-audit --no-fund >/dev/null 2>&1 || npm ci --no-audit --no-fund; }

# ---- tests ------------------------------------------------------------------
unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

fuzz-replay: $(FUZZ_BIN)
	@set -e; for n in $(FUZZ_NAMES); do echo "== fuzz corpus $$n"; \
	    $(BUILD)/fuzz/replay_$$n tests/fuzz/corpus/$$n; done

# A time-boxed libFuzzer run of every harness (clang), FUZZ_SECONDS each; new
# inputs go to build/fuzz-run/<name>/ (copy interesting ones into the corpus).
fuzz:
	$(MAKE) BUILD=build/libfuzzer CC=clang-14 SAN=1 \
	    CFLAGS='-fsanitize=fuzzer-no-link' $(addprefix build/libfuzzer/fuzz/lf_,$(FUZZ_NAMES))
	@set -e; for n in $(FUZZ_NAMES); do mkdir -p build/fuzz-run/$$n; \
	    echo "== fuzzing $$n for $(FUZZ_SECONDS) s"; \
	    build/libfuzzer/fuzz/lf_$$n -max_total_time=$(FUZZ_SECONDS) -max_len=8192 \
	        build/fuzz-run/$$n tests/fuzz/corpus/$$n; done
	$(MAKE) fuzz-diff

# The differential check (Shield vs h11 on generated requests) at length: 50,000
# cases, a new seed each run (SHIELD_DIFF_SEED replays one), on the ASan/UBSan build.
fuzz-diff:
	$(MAKE) BUILD=build/asan SAN=1 all
	SHIELD_DIFF_CASES=$${SHIELD_DIFF_CASES:-50000} SHIELD_DIFF_SEED=$${SHIELD_DIFF_SEED:-random} SHIELD_SAN=1 \
	    SHIELD_BIN=$(abspath build/asan/shield) \
	    $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration/test_differential.py

$(BUILD)/fuzz/lf_%: tests/fuzz/fuzz_%.c $$(call fuzz_lib,$$*) $(LLHTTP_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fsanitize=fuzzer $(LDSAN) -o $@ $^ $(LIBS)

integration: $(BUILD)/shield
	SHIELD_BIN=$(abspath $(BUILD)/shield) SHIELD_SAN=$(SAN) $(PYTHON) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests/integration

asan:
	$(MAKE) BUILD=build/asan SAN=1 all

test: deps
	$(MAKE) check-format
	$(MAKE) all unit fuzz-replay
	$(MAKE) integration
	$(MAKE) BUILD=build/asan SAN=1 all unit fuzz-replay
	$(MAKE) BUILD=build/asan SAN=1 integration

# The kill -9 loop of the disk tier, longer than in `make test`.
soak: all
	SHIELD_KILL_ITERATIONS=$${SHIELD_KILL_ITERATIONS:-500} SHIELD_BIN=$(abspath $(BUILD)/shield) \
	    $(PYTHON) -m pytest -q -p no:cacheprovider -k kill tests/integration/test_cache_disk.py

# deps may install llhttp's sources, which this make has already looked for
# (make caches directory contents): build in a new make, like `test` does.
run: deps
	$(MAKE) all
	tests/demo.sh

# ---- benchmarks ---------------------------------------------------------------
# make cachesim [CACHESIM_ARGS='-S 0 -c 0.5,1']   eviction policies on a Zipf e-book trace
.PHONY: cachesim
cachesim: $(BUILD)/cachesim
	$(BUILD)/cachesim $(CACHESIM_ARGS)

$(BUILD)/cachesim: bench/cachesim.c $(OBJ_DIR)/proxy/cache/evict.o $(OBJ_DIR)/proxy/alloc.o
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDSAN) -o $@ $^ -lm

# make bench [BENCH_ARGS='--quick --scenarios small,book']   Shield against nginx
# proxy_cache side by side (bench/HARNESS.md); results in bench/results/.
BENCH_PKGS := wrk nginx-light gnuplot-nox openssl
BENCH_ARGS ?=
.PHONY: bench
bench: deps
	$(call apt_ensure,bench,$(BENCH_PKGS))
	$(MAKE) -j2 all
	SHIELD_BIN=$(abspath $(BUILD)/shield) $(PYTHON) bench/run $(BENCH_ARGS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

check-format:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build tests/integration/__pycache__
