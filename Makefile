# trail-alerts — every target installs what it needs itself: on a fresh machine with the Rust
# toolchain and python3, `make run` and `make test` need no other step.

CARGO  ?= cargo
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SCAN_ARGS ?= events/trails
EVENT  ?= events/s3-object-created.json

# Offline-safe AWS settings for tests and local runs: dummy credentials, a region, and no probing
# of the EC2 metadata service.
LOCAL_AWS := AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
             AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help all setup build build-x86 release test unit integration sigma e2e lint fmt run bench bench-s3 fuzz check-arm64 watch invoke deploy clean

all: release

## help: the targets (these lines), then what each script under scripts/ is for
help:
	@sed -n 's/^## //p' Makefile
	@echo
	@sed -n '/^## /{s/^## //;p};/^- /{s/^- `\([^`]*\)`: /  scripts\/\1  /;p}' scripts/README.md

## setup: Python tools in .venv (cargo-lambda with zig, moto[server], cfn-lint) and the Rust deps
setup: $(STAMP)
	$(CARGO) fetch --locked

$(STAMP): requirements-dev.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

## release: the optimised command-line binary, target/release/trail-alerts, with S3 (`scan
##          s3://…`, `--rules s3://…`) but without the Lambda function's other SDK clients
release:
	$(CARGO) build --locked --release --no-default-features --features s3 --bin trail-alerts

## build: the Lambda package for arm64 (target/lambda/trail-alerts-lambda/bootstrap.zip)
build: $(STAMP)
	rustup target add aarch64-unknown-linux-gnu
	$(BIN)/cargo-lambda lambda build --release --arm64 --bin trail-alerts-lambda --output-format zip

## build-x86: the Lambda package for x86_64, when the arm64 standard library cannot be installed
build-x86: $(STAMP)
	$(BIN)/cargo-lambda lambda build --release --x86-64 --bin trail-alerts-lambda --output-format zip

## test: every test — unit, integration (conformance, differential, real data, CLI, handler,
##       faults, end to end against moto) and the function through the Lambda runtime API
##       (the benchmark is compiled by `make lint`'s clippy and run by `make bench`), and the
##       Sigma import's agreement with an independent Sigma evaluator
test: unit integration sigma e2e

## unit: the unit tests beside the code (no server, no network)
unit:
	$(CARGO) test --locked --lib --bins

## integration: the one black-box test binary, tests/tests.rs (starts moto_server on loopback)
integration: $(STAMP)
	$(LOCAL_AWS) $(CARGO) test --locked --test integration

## sigma: SigmaHQ's 57 CloudTrail rules (tests/fixtures/sigma) through `rules import sigma`; the
##        converted rules, run by `scan`, must agree with an independent evaluator of the Sigma
##        specification (scripts/test/sigma-agree.py) on every real record and on records generated at
##        each rule's boundaries
sigma: $(STAMP)
	$(BIN)/python scripts/test/sigma-agree.py

## e2e: moto + `cargo lambda watch` + `cargo lambda invoke --data-file events/…`, alerts read from SQS;
##      then the storms through the same runtime API (scripts/test/e2e-storm.py): the storm as issue 30
##      filed it against a PagerDuty stand-in with its 120 events/min, and a match-everything
##      delivery whose peak memory must stay within the function's 256 MiB; then the
##      organisation (scripts/test/e2e-org.py): accounts named from Organizations, routes to a team's
##      topic, and a bad rule object that does not stop alerting
e2e: $(STAMP)
	$(LOCAL_AWS) $(BIN)/python scripts/test/e2e-lambda.py
	$(LOCAL_AWS) $(BIN)/python scripts/test/e2e-storm.py
	$(LOCAL_AWS) $(BIN)/python scripts/test/e2e-org.py

## lint: formatting, clippy (warnings are errors), the three templates (cfn-lint), the member
##       template's fitness for a StackSet (scripts/check/stackset.py, with its self-test), the
##       SAM template's state machine
##       (scripts/check/state-machine.py: the States Language rules checkable offline) and its
##       topic keys (scripts/check/topic-keys.py: every topic or queue an alarm, an EventBridge
##       rule or a function sends to is encrypted with a key that sender may use; with its
##       self-test), and the supply-chain gate (scripts/check/deny.sh: cargo-deny offline, after
##       fetching every platform's crates; advisories from ../shared/advisory-db, bans,
##       licences, sources), and docs/packs.md against the rule files (scripts/gen/packs-doc.py)
lint: $(STAMP)
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --no-default-features --all-targets -- -D warnings
	$(CARGO) clippy --locked --no-default-features --features s3 --all-targets -- -D warnings
	$(BIN)/cfn-lint template.yaml templates/log-archive.yaml templates/member.yaml
	$(BIN)/python scripts/check/state-machine.py
	$(BIN)/python scripts/check/topic-keys.py
	$(BIN)/python scripts/check/topic-keys.py --self-test
	$(BIN)/python scripts/check/stackset.py
	$(BIN)/python scripts/check/stackset.py --self-test
	$(BIN)/python scripts/gen/packs-doc.py --check
	scripts/check/deny.sh

fmt:
	$(CARGO) fmt

## run: scan the bundled sample trail files with the built-in rules and print the alerts
##      (builds only what the command line needs: no AWS SDK)
run:
	$(CARGO) run --locked --quiet --no-default-features --bin trail-alerts -- scan $(SCAN_ARGS)

## bench: scan vs the floor (libdeflate-gunzip) and the Python peer on the 200,000-record corpus,
##        with rule sets of every shape, wall time ratios and peak memory (hyperfine); the Lambda
##        function's cold start and the binary sizes; then the matcher alone with 10 and 1,000 rules
## bench-s3: `scan s3://…` of a 1,000-object tree on moto with 1 and 16 concurrent fetches:
##           objects/s, MB/s and peak memory
bench-s3: $(STAMP)
	$(BIN)/python scripts/bench/s3.py

bench:
	scripts/bench/bench.sh
	$(CARGO) bench --locked --bench matcher

## fuzz: each cargo-fuzz target (log reader, pattern compiler and matcher, payload parser) for
##       FUZZ_SECONDS (default 180), seeded from the fixtures; installs cargo-fuzz if missing
fuzz:
	scripts/test/fuzz.sh

## check-arm64: the reader's NEON string search run on arm64 under qemu-user, against a byte loop;
##              then the command line built for arm64 against the host's, scan by scan
##              (installs the arm64 targets, qemu-user and the arm64 C library if missing)
check-arm64:
	scripts/check/arm64.sh

## watch: the Lambda runtime API emulator on 127.0.0.1:9000 (set AWS_ENDPOINT_URL, ALERT_TOPIC_ARN)
watch: $(STAMP)
	$(BIN)/cargo-lambda lambda watch --invoke-address 127.0.0.1 --invoke-port 9000

## invoke: send a sample payload to `make watch` (EVENT=events/<file>)
invoke: $(STAMP)
	$(BIN)/cargo-lambda lambda invoke trail-alerts-lambda --invoke-address 127.0.0.1 --invoke-port 9000 --data-file $(EVENT)

## deploy: build with SAM and deploy interactively (needs AWS credentials; not run in CI)
deploy: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check 'aws-sam-cli==1.170.0'
	$(BIN)/sam build
	$(BIN)/sam deploy --guided

clean:
	$(CARGO) clean
	rm -rf $(VENV)
