# cluster: a PostgreSQL extension (PGXS)
#
#   make            build (warnings are errors)
#   make install    install into the PostgreSQL found by pg_config
#   make setup      install the Debian packages and npm modules the tests need
#   make test       make setup, build, install, run every test on throwaway instances
#   make installcheck   the regression, isolation and TAP suites against a
#                   running server set up as test/cluster.conf says (no apt)
#   make demo       the main job, end to end, on a throwaway instance
#   make bench      the benchmarks

EXTENSION = cluster
MODULE_big = cluster
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
DATA = $(wildcard sql/cluster--*.sql)

PG_CONFIG ?= pg_config
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter
PG_CPPFLAGS = -I$(srcdir)/src
SHLIB_LINK = -lwebsockets -luv

# pg_regress suites (sql/NAME.sql, expected/NAME.out); the isolation specs
# run in "postgres", where the engines of the instance run too
REGRESS_TESTS = coordination coordinators privileges pumps workers
ISOLATION_TESTS = lease_race kv_race publish_order

# PGXS's own test variables: "make installcheck" runs the same suites
# against a server already running with shared_preload_libraries =
# 'cluster' and the settings of test/cluster.conf, as every contrib module
# does (the TAP tests start nodes of their own from the installed
# binaries).  make test runs them on temporary instances instead.
REGRESS = $(REGRESS_TESTS)
ISOLATION = $(ISOLATION_TESTS)
ISOLATION_OPTS = --inputdir=test/isolation --use-existing
TAP_TESTS = 1
PROVE_TESTS ?= test/t/*.pl

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
override PROVE_FLAGS += -I test/perl
# the databases installcheck uses; the isolation specs run in "postgres",
# where the engines run (cluster.database), and create nothing else
CONTRIB_TESTDB = cluster_regress
ISOLATION_TESTDB = postgres

# the headers are the modules' contracts: a change rebuilds every object
$(OBJS): $(wildcard src/*.h)

# the reference worker, cluster-worker (worker/), built and installed along
all: worker/cluster-worker
worker/cluster-worker: $(wildcard worker/*.c worker/*.h) src/wire.h
	$(MAKE) -C worker
install: install-worker
install-worker: worker/cluster-worker
	$(MAKE) -C worker install
clean: clean-worker
clean-worker:
	$(MAKE) -C worker clean

# Tests run as an unprivileged user (PostgreSQL refuses root) and write
# only below test/out.
OUT = test/out
RUN_AS = scripts/run-as-tester
BINDIR := $(shell $(PG_CONFIG) --bindir)
PGXS_DIR := $(dir $(PGXS))..

.PHONY: test demo bench valgrind setup install-worker clean-worker test-regress test-isolation test-tap test-fuzz test-clients test-netns

setup:
	scripts/setup

test: setup
	$(MAKE) all
	$(MAKE) install
	scripts/prepare-out $(OUT)
	$(MAKE) test-fuzz
	$(MAKE) -C worker check
	$(MAKE) test-netns
	$(RUN_AS) $(MAKE) test-regress test-isolation test-tap test-clients

test-regress:
	mkdir -p $(OUT)/regress
	$(PGXS_DIR)/test/regress/pg_regress --bindir='$(BINDIR)' \
		--temp-instance=$(OUT)/regress/instance --temp-config=test/cluster.conf \
		--inputdir=. --outputdir=$(OUT)/regress --dbname=cluster_regress \
		$(REGRESS_TESTS)

test-isolation:
	mkdir -p $(OUT)/isolation
	$(PGXS_DIR)/test/isolation/pg_isolation_regress --bindir='$(BINDIR)' \
		--temp-instance=$(OUT)/isolation/instance --temp-config=test/cluster.conf \
		--inputdir=test/isolation --outputdir=$(OUT)/isolation \
		--dbname=postgres --use-existing $(ISOLATION_TESTS)

# workers on other hosts (network namespaces, a partition): as root, which
# namespaces need; the server and the workers run as the test user
test-netns:
	OUT=$(OUT) prove test/netns/partition.pl

# the client libraries' own suites, each against a throwaway server
test-clients:
	clients/node/test/run $(OUT)/clients-node
	clients/python/test/run $(OUT)/clients-python

test-tap:
	rm -rf $(OUT)/tap && mkdir -p $(OUT)/tap
	TESTDIR='$(CURDIR)/$(OUT)/tap' PATH="$(BINDIR):$$PATH" \
	PG_REGRESS='$(PGXS_DIR)/test/regress/pg_regress' \
	prove -I $(PGXS_DIR)/test/perl $(PROVE_FLAGS) $(PROVE_TESTS)

# The parsers of untrusted input, fuzzed with libFuzzer (and ASan, UBSan):
# the decoder of worker messages, built with PostgreSQL's frontend JSON
# parser, the parser of the worker addresses that registering roles send,
# the parser of the endpoints a cluster_admin gives as "listen", and
# cluster-worker's decoder of leader messages (worker/protocol.c, with
# jansson; the rest of the worker is stubbed, lws not linked).  Each runs
# on a copy of its seed corpus.  PostgreSQL's JSON parser leaks on error
# paths by design (the server frees it with the memory context), so leak
# detection is off but for the worker's target.
FUZZ_SECONDS ?= 15
FUZZ_CC = clang -g -O1 -Wno-ignored-attributes -fsanitize=fuzzer,address,undefined \
	-DFRONTEND -Isrc -I$(includedir_server) -I$(includedir_internal)
FUZZ_LIBS = $(pkglibdir)/libpgcommon.a $(pkglibdir)/libpgport.a
$(OUT)/fuzz_protocol: test/fuzz/fuzz_protocol.c src/protocol.c src/protocol.h src/wire.h
	mkdir -p $(OUT)
	$(FUZZ_CC) test/fuzz/fuzz_protocol.c src/protocol.c $(FUZZ_LIBS) -o $@
$(OUT)/fuzz_address: test/fuzz/fuzz_address.c src/allowlist.c src/allowlist.h
	mkdir -p $(OUT)
	$(FUZZ_CC) test/fuzz/fuzz_address.c src/allowlist.c $(FUZZ_LIBS) -o $@
$(OUT)/fuzz_listen: test/fuzz/fuzz_listen.c src/listen.c src/listen.h
	mkdir -p $(OUT)
	$(FUZZ_CC) test/fuzz/fuzz_listen.c src/listen.c $(FUZZ_LIBS) -o $@
FUZZ_WORKER_CC = clang -g -O1 -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -D_GNU_SOURCE -Iworker
$(OUT)/fuzz_worker: test/fuzz/fuzz_worker.c worker/protocol.c worker/protocol.h src/wire.h
	mkdir -p $(OUT)
	$(FUZZ_WORKER_CC) test/fuzz/fuzz_worker.c worker/protocol.c -ljansson -o $@

test-fuzz: $(OUT)/fuzz_protocol $(OUT)/fuzz_address $(OUT)/fuzz_listen $(OUT)/fuzz_worker
	set -e; for t in protocol:corpus address:corpus-address listen:corpus-listen worker:corpus-worker; do \
		name=$${t%%:*}; corpus=$${t#*:}; leaks=0; [ $$name != worker ] || leaks=1; \
		rm -rf $(OUT)/fuzz-$$corpus && cp -r test/fuzz/$$corpus $(OUT)/fuzz-$$corpus; \
		echo "fuzz_$$name:"; \
		ASAN_OPTIONS=detect_leaks=$$leaks $(OUT)/fuzz_$$name -max_total_time=$(FUZZ_SECONDS) \
			-print_final_stats=1 $(OUT)/fuzz-$$corpus >$(OUT)/fuzz_$$name.log 2>&1 || \
			{ tail -30 $(OUT)/fuzz_$$name.log; exit 1; }; \
		tail -4 $(OUT)/fuzz_$$name.log; \
	done

demo: setup
	$(MAKE) all
	$(MAKE) install
	scripts/prepare-out $(OUT)
	$(RUN_AS) scripts/demo $(OUT)/demo

bench: setup
	$(MAKE) all
	$(MAKE) install
	scripts/prepare-out $(OUT)
	rm -f $(OUT)/bench/figures.tsv
	$(RUN_AS) bench/idle $(OUT)/bench/idle
	$(RUN_AS) bench/pump $(OUT)/bench/pump
	$(RUN_AS) bench/backlog $(OUT)/bench/backlog
	$(RUN_AS) bench/mesh $(OUT)/bench/mesh
	$(RUN_AS) bench/patch $(OUT)/bench/patch
	$(RUN_AS) bench/commit $(OUT)/bench/commit
	$(RUN_AS) bench/realistic $(OUT)/bench/realistic
	$(RUN_AS) bench/charts $(OUT)/bench

# The extension under valgrind: a server whose processes all run under
# memcheck goes through leadership changes and every SQL function; any
# error with a frame in cluster.so fails the target.
valgrind: setup
	$(MAKE) all install
	scripts/prepare-out $(OUT)
	$(RUN_AS) test/valgrind $(OUT)/valgrind
