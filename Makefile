# repcached-ng: replication for memcached 1.2.8, as a quilt patch series.
#
# `make` builds the patched memcached (single-threaded and threaded variants)
# from the pinned upstream archive; `make check` runs every test. `make help`
# lists the targets.

# --- What we build, and from what -------------------------------------------

UPSTREAM_VERSION := $(shell cat upstream/VERSION)
SERIES_VERSION   := $(shell cat VERSION)
# Where Gentoo (and our README) keeps downloaded archives.
DISTDIR  ?= /var/cache/distfiles
# OFFLINE=1: never try the mirrors in upstream/urls.
OFFLINE  ?= 0
export DISTDIR OFFLINE

BUILD    := build
SRC      := $(BUILD)/memcached-$(UPSTREAM_VERSION)
# Both supported configurations of 1.2.8; each gets its own build tree.
VARIANTS := single threads
CONFIGURE_FLAGS_single  := --enable-replication
CONFIGURE_FLAGS_threads := --enable-replication --enable-threads
# Baselines for `make bench`: the same patched source configured without
# --enable-replication, where every replication hunk is compiled out, so
# these are plain 1.2.8 plus the build fixes.
PLAIN_VARIANTS := plain-single plain-threads
CONFIGURE_FLAGS_plain-single  :=
CONFIGURE_FLAGS_plain-threads := --enable-threads
CONFIG_SHELL ?= /bin/sh

# Our quiltrc, never the user's, so that refreshes are byte-identical.
QUILT    := quilt --quiltrc $(CURDIR)/quiltrc
PATCHES  := patches/series $(wildcard patches/*.patch)

CXX      ?= g++
CXXFLAGS ?= -O1 -g
BENCH_TOOL := $(BUILD)/tests/repl-bench
TEST_CXXFLAGS := -std=c++17 -Wall -Wextra -Itests -I$(SRC) -DREPO_ROOT=\"$(CURDIR)\" $(CXXFLAGS)
DIST_TARBALL := $(BUILD)/memcached-$(UPSTREAM_VERSION)-repcached-ng-$(SERIES_VERSION)-patches.tar.gz
# make fuzz: each fuzz target under libFuzzer, for FUZZ_SECONDS seconds,
# with AddressSanitizer and UBSan, from its committed seeds
# (tests/fuzz/corpus/<target>/); what it learns is kept in
# $(FUZZ_DIR)/corpus/<target>. make check runs each for FUZZ_CHECK_SECONDS.
CLANG    ?= clang
CLANGXX  ?= clang++
FUZZ_SECONDS ?= 30
FUZZ_CHECK_SECONDS ?= 20
# repl-codec: the wire decoder alone; repl-link: a link's handshake and
# frames through a real node's link, apply and cache code.
FUZZ_TARGETS := repl-codec repl-link
# make soak: kill -9 cycles of a replicated pair under writes (make check
# runs 5 of them on each variant).
SOAK_CYCLES ?= 100
FUZZ_DIR := $(BUILD)/fuzz
FUZZ_SANITIZERS := -fsanitize=address,undefined -fno-sanitize-recover=all
# Longer inputs only slow the targets down: the decoder's cases fit in
# 4 KiB, a link's in 64 KiB (a resync of a few items, a large value).
FUZZ_MAX_LEN_repl-codec ?= 4096
FUZZ_MAX_LEN_repl-link ?= 65536
# make check-sanitize: the patched server built with ThreadSanitizer (threads
# variant) and with AddressSanitizer and UBSan (both variants), each in a
# build tree of its own named <sanitizer>-<variant>; any report fails the run.
SANITIZE_BUILDS := tsan-threads asan-single asan-threads
SANITIZE_FLAGS_tsan := -fsanitize=thread
SANITIZE_FLAGS_asan := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# The binary each sanitizer tests (see the rules below).
SANITIZE_BINARY_tsan := memcached
SANITIZE_BINARY_asan := memcached-debug
# The Debian packages (debian/ + patches/ as debian/patches) are made here.
DEB_DIR  := $(BUILD)/deb

# Where `make install` puts things; DESTDIR stages an install (packagers).
PREFIX   ?= /usr/local
DESTDIR  ?=
BINDIR   ?= $(PREFIX)/bin
MANDIR   ?= $(PREFIX)/share/man
# The variant installed as bin/memcached: threads (what most deployments
# want) or single.
INSTALL_VARIANT ?= threads
ifeq ($(filter $(INSTALL_VARIANT),$(VARIANTS)),)
$(error INSTALL_VARIANT=$(INSTALL_VARIANT) is not a variant we build; use one of: $(VARIANTS))
endif
# install-systemd: where the units go (in systemd's search path for /usr and
# /usr/local), the settings file they read, and where their helper goes.
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
LIBEXECDIR ?= $(PREFIX)/libexec
ENVFILE  ?= /etc/default/memcached

# --- User-facing targets ------------------------------------------------------

.PHONY: soak all check check-sanitize bench bench-tools demo fuzz fuzz-corpus patches-check dist manifest deb-source deb install install-systemd uninstall clean distclean help deps-build deps-check deps-deb deps-fuzz deps-sanitize

## all: build memcached (build/single/memcached, build/threads/memcached)
all: $(foreach v,$(VARIANTS),build-$(v))

## check: build, then run the upstream suite on both variants and our tests
check: all deps-check
	$(MAKE) --no-print-directory test-binaries
	FUZZ_CHECK_SECONDS=$(FUZZ_CHECK_SECONDS) scripts/check $(BUILD) $(SRC) $(VARIANTS)

## check-sanitize: the [node] tests against the server built with TSan (threads) and ASan+UBSan (both variants); about 20 minutes
check-sanitize: $(foreach s,$(SANITIZE_BUILDS),build-$(s)) deps-check
	$(MAKE) --no-print-directory test-binaries
	scripts/check-sanitize $(BUILD) $(SANITIZE_BUILDS)

## bench-tools: build the load and lag tool (build/tests/repl-bench)
bench-tools: $(BENCH_TOOL)

## bench: plain 1.2.8 against a replicated pair: throughput, p99, resync rate, lag, the pinned setup of issue 13, catch-up against full resync, -W latency, a three-node mesh (about 20 minutes; BENCH_ONLY=harsh,mesh runs some parts)
bench: all $(foreach v,$(PLAIN_VARIANTS),build-$(v)) bench-tools
	scripts/bench $(BUILD)

## demo: a replicated pair on loopback: write on one, read on the other, kill -9 and resync
demo: build-threads
	scripts/demo $(BUILD)/threads/memcached

## fuzz: fuzz the decoder, then a replication link of a real node, with libFuzzer, ASan and UBSan for FUZZ_SECONDS (default 30) seconds each
fuzz: build-single deps-fuzz
	$(MAKE) --no-print-directory fuzz-binaries
	@for target in $(FUZZ_TARGETS); do \
	    $(MAKE) --no-print-directory fuzz-run FUZZ_TARGET=$$target FUZZ_CORPUS=$(FUZZ_DIR)/corpus/$$target || \
	    { echo "make fuzz: $$target found an input that breaks the code (saved as $(FUZZ_DIR)/$$target-crash-*, -leak-* or -timeout-*; report above);" \
	        "reproduce it with $(FUZZ_DIR)/$$target-fuzz FILE, fix it, and add it to tests/fuzz/corpus/$$target/ as a regression seed" >&2; exit 1; }; \
	done

## fuzz-corpus: write the fuzz targets' seeds into tests/fuzz/corpus/ (commit them)
fuzz-corpus: $(BUILD)/.patched deps-fuzz
	$(MAKE) --no-print-directory $(FUZZ_DIR)/repl-fuzz-seeds
	for target in $(FUZZ_TARGETS); do \
	    rm -f tests/fuzz/corpus/$$target/seed-* && mkdir -p tests/fuzz/corpus/$$target && \
	    $(FUZZ_DIR)/repl-fuzz-seeds $$target tests/fuzz/corpus/$$target || exit 1; \
	done

## soak: kill -9 either node of a pair under writes SOAK_CYCLES (default 100) times, on the threaded build
soak: build-threads
	$(MAKE) --no-print-directory test-binaries
	MEMCACHED_BIN=$(CURDIR)/$(BUILD)/threads/memcached MEMCACHED_VARIANT=threads SOAK_CYCLES=$(SOAK_CYCLES) \
	    $(BUILD)/tests/repcached-tests '[soak]'

## patches-check: DEP-3 headers, fuzz 0, refresh a no-op; every prefix builds and passes a smoke test
patches-check: deps-build
	scripts/patches-check

## dist: a versioned tarball of the patch series (for the ebuild's SRC_URI)
dist: $(DIST_TARBALL)

## manifest: rewrite ebuild/net-misc/memcached/Manifest for the current series (make dist)
manifest:
	scripts/update-manifest

## install: install bin/memcached (INSTALL_VARIANT, default threads) and its man page under $(DESTDIR)$(PREFIX)
install: build-$(INSTALL_VARIANT)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 0755 $(BUILD)/$(INSTALL_VARIANT)/memcached $(DESTDIR)$(BINDIR)/memcached
	install -m 0644 $(SRC)/doc/memcached.1 $(DESTDIR)$(MANDIR)/man1/memcached.1

## install-systemd: install memcached.service, memcached@.service (for $(BINDIR)/memcached), their helper and, if absent, $(ENVFILE)
install-systemd:
	install -d $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(LIBEXECDIR)/memcached
	install -m 0755 dist/memcached-cmdline $(DESTDIR)$(LIBEXECDIR)/memcached/memcached-cmdline
	for unit in memcached.service memcached@.service; do \
	    sed -e 's|/usr/libexec/memcached/|$(LIBEXECDIR)/memcached/|' -e 's|/usr/bin/memcached|$(BINDIR)/memcached|' \
	        -e 's|=-/etc/default/memcached|=-$(ENVFILE)|' dist/systemd/$$unit >$(DESTDIR)$(SYSTEMDUNITDIR)/$$unit && \
	    chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$unit || exit 1; \
	done
	@# Settings are the operator's: never overwrite them.
	if [ -e $(DESTDIR)$(ENVFILE) ]; then \
	    echo "install-systemd: kept the existing $(DESTDIR)$(ENVFILE); see dist/systemd/memcached.env for new settings"; \
	else \
	    install -D -m 0644 dist/systemd/memcached.env $(DESTDIR)$(ENVFILE); \
	fi

## uninstall: remove what install and install-systemd installed (not the settings file)
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/memcached $(DESTDIR)$(MANDIR)/man1/memcached.1 \
	    $(DESTDIR)$(SYSTEMDUNITDIR)/memcached.service $(DESTDIR)$(SYSTEMDUNITDIR)/memcached@.service \
	    $(DESTDIR)$(LIBEXECDIR)/memcached/memcached-cmdline

## deb-source: Debian source package, format 3.0 (quilt), in build/deb/ (dpkg-source -b)
deb-source: deps-deb
	scripts/deb-package source $(DEB_DIR)

## deb: also build the binary package from it in build/deb/ (dpkg-buildpackage -us -uc -b)
deb: deps-deb
	scripts/deb-package binary $(DEB_DIR)

## clean: remove build/ (keeps downloaded archives in upstream/)
clean:
	rm -rf $(BUILD)

## distclean: also remove archives downloaded into upstream/
distclean: clean
	rm -f upstream/*.tar.gz upstream/*.tar.gz.part

## help: list the targets
help:
	@sed -n 's/^## //p' $(MAKEFILE_LIST)

# --- Internal rules -----------------------------------------------------------

deps-build:
	@scripts/build-deps build

deps-check:
	@scripts/build-deps check

deps-deb:
	@scripts/build-deps deb

deps-fuzz:
	@scripts/build-deps fuzz

deps-sanitize:
	@scripts/build-deps sanitize

# The variants and their configure flags, one per line, for scripts/patches-check.
.PHONY: variants
variants:
	@$(foreach v,$(VARIANTS),echo '$(v) $(CONFIGURE_FLAGS_$(v))';)

# Unpack a verified archive and apply the whole series. Any change to the
# series starts again from a fresh tree, so build/ never mixes two series.
$(BUILD)/.patched: $(PATCHES) upstream/checksums | deps-build
	rm -rf $(SRC) $(BUILD)/.patched
	mkdir -p $(BUILD)
	archive=$$(scripts/fetch-upstream) && tar -xzf "$$archive" -C $(BUILD)
	ln -s $(CURDIR)/patches $(SRC)/patches
	cd $(SRC) && $(QUILT) push -a -q --fuzz=0 || \
	    { echo "make: the patch above does not apply to memcached $(UPSTREAM_VERSION) with fuzz 0: refresh it (see docs/series.md)" >&2; exit 1; }
	@# The tag archive has no configure, and the series changes configure.ac.
	cd $(SRC) && { aclocal && autoheader && automake --foreign --add-missing --copy && autoconf; } \
	    >$(CURDIR)/$(BUILD)/autogen.log 2>&1 || \
	    { cat $(CURDIR)/$(BUILD)/autogen.log; echo "make: regenerating autotools failed (log above)" >&2; exit 1; }
	touch $@

$(foreach v,$(VARIANTS) $(PLAIN_VARIANTS),$(BUILD)/$(v)/config.status): $(BUILD)/%/config.status: $(BUILD)/.patched
	rm -rf $(BUILD)/$*
	mkdir -p $(BUILD)/$*
	cd $(BUILD)/$* && CONFIG_SHELL=$(CONFIG_SHELL) $(CONFIG_SHELL) $(CURDIR)/$(SRC)/configure \
	    $(CONFIGURE_FLAGS_$*) >configure.log 2>&1 || \
	    { cat configure.log; echo "make: configure of the $* variant failed (log above)" >&2; exit 1; }

.PHONY: $(foreach v,$(VARIANTS) $(PLAIN_VARIANTS),build-$(v))
$(foreach v,$(VARIANTS) $(PLAIN_VARIANTS),build-$(v)): build-%: $(BUILD)/%/config.status
	$(MAKE) -C $(BUILD)/$* --no-print-directory

# The sanitized builds: clang, -O1 -g, the variant's configure flags. ASan
# and UBSan test memcached-debug, the binary upstream's own `make test`
# runs: it keeps the assertions that memcached (-DNDEBUG) compiles out.
# TSan tests memcached, the binary we ship: some of upstream's assertions
# read item flags without the lock (drive_machine's ITEM_SLABBED check
# while another thread sets ITEM_DELETED in the same byte), a race only
# the debug build has.
$(foreach s,$(SANITIZE_BUILDS),$(BUILD)/$(s)/config.status): $(BUILD)/%/config.status: $(BUILD)/.patched | deps-sanitize
	rm -rf $(BUILD)/$*
	mkdir -p $(BUILD)/$*
	cd $(BUILD)/$* && CC=$(CLANG) CFLAGS='$(SANITIZE_FLAGS_$(word 1,$(subst -, ,$*))) -g -O1' \
	    LDFLAGS='$(SANITIZE_FLAGS_$(word 1,$(subst -, ,$*)))' CONFIG_SHELL=$(CONFIG_SHELL) \
	    $(CONFIG_SHELL) $(CURDIR)/$(SRC)/configure $(CONFIGURE_FLAGS_$(word 2,$(subst -, ,$*))) >configure.log 2>&1 || \
	    { cat configure.log; echo "make: configure of the $* build failed (log above)" >&2; exit 1; }

.PHONY: $(foreach s,$(SANITIZE_BUILDS),build-$(s))
$(foreach s,$(SANITIZE_BUILDS),build-$(s)): build-%: $(BUILD)/%/config.status
	$(MAKE) -C $(BUILD)/$* --no-print-directory $(SANITIZE_BINARY_$(word 1,$(subst -, ,$*)))

# Test programs; run by a second make so that $(SRC) exists when it parses.
TEST_MAIN     := $(BUILD)/tests/main.o
TEST_SOURCES  := $(wildcard tests/support/*.cpp tests/unit/*.cpp tests/integration/*.cpp tests/harness/*.cpp tests/packaging/*.cpp tests/maint/*.cpp)
TEST_SOURCES  := $(filter-out tests/support/main.cpp,$(TEST_SOURCES))
TEST_HEADERS  := $(wildcard tests/support/*.hpp tests/maint/*.hpp)
# The pure parts of the replication code, linked into the unit tests as is.
TEST_C_OBJECTS := $(patsubst $(SRC)/%.c,$(BUILD)/tests/%.o,$(wildcard $(SRC)/repl_codec.c $(SRC)/hlc.c))

# One object per test source, so that changing a test recompiles that file
# only; a change to our headers recompiles all, and -MMD records which of
# memcached's headers each includes.
TEST_OBJECTS  := $(patsubst tests/%.cpp,$(BUILD)/tests/obj/%.o,$(TEST_SOURCES))
# Preloaded into the nodes of the tests of racing writes (see the file).
LOCK_HANDOFF  := $(BUILD)/tests/lock_handoff.so
# Preloaded into nodes that must take the same node id (see the file).
FIXED_RANDOM  := $(BUILD)/tests/fixed_random.so

.PHONY: test-binaries
test-binaries: $(BUILD)/tests/repcached-tests $(LOCK_HANDOFF) $(FIXED_RANDOM)

$(TEST_MAIN): tests/support/main.cpp $(TEST_HEADERS)
	mkdir -p $(dir $@)
	$(CXX) $(TEST_CXXFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/tests/obj/%.o: tests/%.cpp $(TEST_HEADERS)
	mkdir -p $(dir $@)
	$(CXX) $(TEST_CXXFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/tests/%.o: $(SRC)/%.c
	$(CC) -std=gnu99 -Wall -Wextra -O1 -g -c $< -o $@

$(BUILD)/tests/repcached-tests: $(TEST_MAIN) $(TEST_OBJECTS) $(TEST_C_OBJECTS)
	$(CXX) $(TEST_CXXFLAGS) -o $@ $(TEST_MAIN) $(TEST_OBJECTS) $(TEST_C_OBJECTS)

-include $(TEST_MAIN:.o=.d) $(TEST_OBJECTS:.o=.d)

# Preloaded into memcached, a C program: no exceptions, and libstdc++ is
# not loaded (they use none of it).
$(LOCK_HANDOFF): tests/tools/lock_handoff.cpp
	mkdir -p $(dir $@)
	$(CXX) -std=c++17 -Wall -Wextra -O2 -g -shared -fPIC -fno-exceptions -fno-rtti -Wl,--as-needed -o $@ $< -ldl

$(FIXED_RANDOM): tests/tools/fixed_random.cpp
	mkdir -p $(dir $@)
	$(CXX) -std=c++17 -Wall -Wextra -O2 -g -shared -fPIC -fno-exceptions -fno-rtti -Wl,--as-needed -o $@ $< -ldl

# Optimised, unlike the tests: it must not be the bottleneck it measures.
$(BENCH_TOOL): tests/tools/repl_bench.cpp
	mkdir -p $(dir $@)
	$(CXX) -std=c++17 -Wall -Wextra -O2 -g -pthread -o $@ $<

$(DIST_TARBALL): $(PATCHES)
	mkdir -p $(BUILD)
	scripts/dist-series $@

# The fuzzers. The code they test gets coverage instrumentation too
# (fuzzer-no-link), so that libFuzzer is guided by its branches, not only
# the harness's. repl-link links the whole patched server, configured as
# the single variant (its config.h), built with -DREPL_FUZZING (the seams
# it drives, compiled into nothing else) and main() renamed.
FUZZ_CXXFLAGS := -std=c++17 -Wall -Wextra -g -O1 -Itests -I$(SRC)
FUZZ_NODE_SOURCES := memcached slabs items assoc stats replication repl_link repl_stream repl_apply repl_stats repl_codec repl_auth repl_backlog repl_sync hlc
FUZZ_NODE_OBJECTS := $(patsubst %,$(FUZZ_DIR)/node/%.o,$(FUZZ_NODE_SOURCES))
FUZZ_NODE_LIBS := -levent -lcrypto

.PHONY: fuzz-binaries
fuzz-binaries: $(patsubst %,$(FUZZ_DIR)/%-fuzz,$(FUZZ_TARGETS)) $(FUZZ_DIR)/repl-fuzz-seeds

$(FUZZ_DIR)/repl_codec.o: $(SRC)/repl_codec.c $(SRC)/repl_codec.h
	mkdir -p $(dir $@)
	$(CLANG) -std=gnu99 -Wall -Wextra -g -O1 -fsanitize=fuzzer-no-link $(FUZZ_SANITIZERS) -c $< -o $@

$(FUZZ_DIR)/node/%.o: $(SRC)/%.c $(wildcard $(SRC)/*.h) $(BUILD)/single/config.status
	mkdir -p $(dir $@)
	$(CLANG) -DHAVE_CONFIG_H -DREPL_FUZZING -Dmain=memcached_main -I$(BUILD)/single -I$(SRC) \
	    -g -O1 -fsanitize=fuzzer-no-link $(FUZZ_SANITIZERS) -c $< -o $@

$(FUZZ_DIR)/repl-codec-fuzz: tests/fuzz/repl_codec_fuzz.cpp tests/support/codec_fuzz.hpp $(FUZZ_DIR)/repl_codec.o
	$(CLANGXX) $(FUZZ_CXXFLAGS) -fsanitize=fuzzer $(FUZZ_SANITIZERS) -o $@ $< $(FUZZ_DIR)/repl_codec.o

$(FUZZ_DIR)/repl-link-fuzz: tests/fuzz/repl_link_fuzz.cpp tests/support/link_fuzz.hpp $(FUZZ_NODE_OBJECTS)
	$(CLANGXX) $(FUZZ_CXXFLAGS) -fsanitize=fuzzer $(FUZZ_SANITIZERS) -o $@ $< $(FUZZ_NODE_OBJECTS) $(FUZZ_NODE_LIBS)

# The fuzz targets, one a line (scripts/fuzz-check).
.PHONY: fuzz-targets
fuzz-targets:
	@$(foreach t,$(FUZZ_TARGETS),echo '$(t)';)

# One run of the fuzz target FUZZ_TARGET for FUZZ_SECONDS from its committed
# seeds, adding what it learns to FUZZ_CORPUS (make fuzz, scripts/fuzz-check).
# An input that takes 25 s is a hang, reported like a crash.
.PHONY: fuzz-run
fuzz-run:
	mkdir -p $(FUZZ_CORPUS)
	$(FUZZ_DIR)/$(FUZZ_TARGET)-fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN_$(FUZZ_TARGET)) \
	    -timeout=25 -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/$(FUZZ_TARGET)- \
	    $(FUZZ_CORPUS) tests/fuzz/corpus/$(FUZZ_TARGET)

$(FUZZ_DIR)/repl-fuzz-seeds: tests/fuzz/seed_corpus.cpp tests/support/codec_fuzz.hpp tests/support/link_fuzz.hpp $(FUZZ_DIR)/repl_codec.o
	$(CLANGXX) $(FUZZ_CXXFLAGS) -fsanitize=fuzzer-no-link $(FUZZ_SANITIZERS) -o $@ $< $(FUZZ_DIR)/repl_codec.o
