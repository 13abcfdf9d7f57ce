# churnd - see README.md. The two commands a person needs:
#   make demo    build and run the daemon on its embedded broker with sample events
#   make check   build and pass every test
# Both install missing Debian packages first (scripts/deps.sh).

CC      ?= cc
BUILD   ?= build
PKGS    := rdkafka rocksdb libuv libcjson yaml-0.1 libsystemd
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -Wall -Wextra -Werror -Werror=unused-result \
           -D_GNU_SOURCE -Iinclude -MMD -MP $(EXTRA_CFLAGS)
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS)) -lhttp_parser -lm -lpthread
CMOCKA_LIBS = $(shell pkg-config --libs cmocka)
LDFLAGS += $(EXTRA_LDFLAGS)

SRCS      := $(sort $(wildcard daemon/*.c))
LIB_SRCS  := $(filter-out daemon/main.c,$(SRCS))
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%)
INT_SRCS  := $(sort $(wildcard tests/integration/test_*.c))
INT_BINS  := $(INT_SRCS:tests/integration/%.c=$(BUILD)/tests/integration/%)
TLIB_SRCS := $(sort $(wildcard tests/lib/*.c))
TLIB_OBJS := $(TLIB_SRCS:%.c=$(BUILD)/obj/%.o)

# The pure core: no Kafka, RocksDB, libuv or clock in these files.
CORE_FILES := daemon/common.c daemon/timeutil.c daemon/event.c \
              $(wildcard daemon/expr.c daemon/rules_load.c daemon/features.c \
                         daemon/engine.c daemon/cstate.c daemon/alert.c daemon/watermark.c daemon/processor.c \
                         daemon/ledger.c daemon/report.c daemon/prom.c)

.PHONY: all deps demo check check-run check-asan unit integration check-core clean tools \
        fuzz bench check-valgrind install uninstall

all: $(BUILD)/churnd

deps:
	@scripts/deps.sh

demo: deps
	@$(MAKE) --no-print-directory all tools
	@scripts/demo.sh

check: deps
	@$(MAKE) --no-print-directory check-run

check-run: all tools $(UNIT_BINS) $(INT_BINS)
	@scripts/run-tests.sh $(BUILD)

# The same suite on an AddressSanitizer + UndefinedBehaviorSanitizer build;
# integration tests then run the sanitized daemon, whose leak report would
# turn its exit status non-zero. Undefined behaviour aborts rather than
# being printed and passed over, so that it fails the test that hits it.
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
             -fno-omit-frame-pointer
check-asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 \
	    EXTRA_CFLAGS="$(SAN_FLAGS)" EXTRA_LDFLAGS="$(SAN_FLAGS)" check-run

# The integration suite with the daemon under valgrind's memcheck
# (scripts/valgrind-churnd.sh); slow, so not part of `make check`.
check-valgrind: deps
	@$(MAKE) --no-print-directory all tools $(INT_BINS)
	@CHURND_TEST_VALGRIND=1 scripts/run-tests.sh $(BUILD) integration

unit: $(UNIT_BINS)
	@scripts/run-tests.sh $(BUILD) unit

integration: all tools $(INT_BINS)
	@scripts/run-tests.sh $(BUILD) integration

check-core:
	@scripts/check-core.sh $(CORE_FILES)

TOOL_SRCS := $(sort $(wildcard tests/tools/*.c))
TOOL_BINS := $(TOOL_SRCS:tests/tools/%.c=$(BUILD)/tests/%)
tools: $(TOOL_BINS)

# Longer fuzzing runs than the short ones of `make check` (FUZZ_SECONDS per
# target), with clang's libFuzzer; see scripts/fuzz.sh.
FUZZ_SECONDS ?= 60
fuzz: deps
	@scripts/fuzz.sh $(FUZZ_SECONDS)

# Throughput, latency, memory and recovery against baselines measured in
# the same run; writes $(BUILD)/bench.json. See scripts/bench.sh.
bench: deps
	@$(MAKE) --no-print-directory all tools
	@scripts/bench.sh $(BUILD)

$(BUILD)/churnd: $(BUILD)/obj/daemon/main.o $(BUILD)/libchurnd.a
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/libchurnd.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(BUILD)/tests/unit/%: $(BUILD)/obj/tests/unit/%.o $(TLIB_OBJS) $(BUILD)/libchurnd.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(CMOCKA_LIBS)

$(BUILD)/tests/integration/%: $(BUILD)/obj/tests/integration/%.o $(TLIB_OBJS) $(BUILD)/libchurnd.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(CMOCKA_LIBS)

# Tools of tests/tools/, e.g. kt: the test and demo toolkit (a standalone
# mock broker, producer, consumer and lag waiter over librdkafka).
$(BUILD)/tests/%: $(BUILD)/obj/tests/tools/%.o $(TLIB_OBJS) $(BUILD)/libchurnd.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

# Installation. PREFIX holds the program, its unit and its docs; the
# configuration always goes to /etc/churnd, because that is where the
# unit's ConfigurationDirectory= and ExecStart= look whatever the PREFIX.
# DESTDIR stages everything under another root (packaging, tests).
# The installed unit is the template with ExecStart= (and the docs link)
# rewritten to this PREFIX, so the unit always runs the binary installed
# with it. The docs keep the repository's layout (README.md links to
# docs/...). An existing churnd.yaml or rules/ is never overwritten: they
# are the operator's once installed.
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
DOCDIR  ?= $(PREFIX)/share/doc/churnd
CONFDIR := /etc/churnd

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)/docs \
	    $(DESTDIR)$(CONFDIR)
	install -m 0755 $(BUILD)/churnd $(DESTDIR)$(BINDIR)/churnd
	sed -e 's|^ExecStart=[^ ]*/churnd |ExecStart=$(BINDIR)/churnd |' \
	    -e 's|^Documentation=file:.*/share/doc/churnd/|Documentation=file:$(DOCDIR)/|' \
	    systemd/churnd.service >$(DESTDIR)$(UNITDIR)/churnd.service.tmp
	@grep -q '^ExecStart=$(BINDIR)/churnd run ' $(DESTDIR)$(UNITDIR)/churnd.service.tmp || \
	    { echo "install: ExecStart= of systemd/churnd.service was not rewritten" >&2; \
	      rm -f $(DESTDIR)$(UNITDIR)/churnd.service.tmp; exit 1; }
	chmod 0644 $(DESTDIR)$(UNITDIR)/churnd.service.tmp
	mv $(DESTDIR)$(UNITDIR)/churnd.service.tmp $(DESTDIR)$(UNITDIR)/churnd.service
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/
	install -m 0644 docs/*.md $(DESTDIR)$(DOCDIR)/docs/
	@if [ -e $(DESTDIR)$(CONFDIR)/churnd.yaml ]; then \
	    echo "install: keeping the existing $(DESTDIR)$(CONFDIR)/churnd.yaml"; \
	else \
	    echo "install -m 0644 systemd/churnd.yaml $(DESTDIR)$(CONFDIR)/churnd.yaml"; \
	    install -m 0644 systemd/churnd.yaml $(DESTDIR)$(CONFDIR)/churnd.yaml; \
	fi
	@if [ -e $(DESTDIR)$(CONFDIR)/rules ]; then \
	    echo "install: keeping the existing $(DESTDIR)$(CONFDIR)/rules"; \
	else \
	    echo "install -m 0644 rules/*.yaml $(DESTDIR)$(CONFDIR)/rules/"; \
	    install -d $(DESTDIR)$(CONFDIR)/rules && \
	    install -m 0644 rules/*.yaml $(DESTDIR)$(CONFDIR)/rules/; \
	fi

# Removes what install put under PREFIX; /etc/churnd and the state in
# /var/lib/churnd are the operator's and stay.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/churnd $(DESTDIR)$(UNITDIR)/churnd.service
	rm -rf $(DESTDIR)$(DOCDIR)

clean:
	rm -rf $(BUILD) build-asan

.SECONDARY:

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
