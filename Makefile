# trail-alerts — every target installs what it needs itself; `make run` and `make test` work on a
# fresh machine with only the Rust toolchain and python3.

CARGO ?= cargo
SCAN_ARGS ?= events/trails

.PHONY: all setup build release test lint fmt run bench corpus clean

all: build

## setup: fetch the locked Rust dependencies (the test and run targets do this themselves too)
setup:
	$(CARGO) fetch --locked

## build: debug build of the library and the `trail-alerts` binary
build:
	$(CARGO) build --locked

## release: optimised `trail-alerts` binary (target/release/trail-alerts)
release:
	$(CARGO) build --locked --release --bin trail-alerts

## test: every test — unit, conformance, differential, black-box CLI tests
test:
	$(CARGO) test --locked --all-targets
	$(CARGO) test --locked --doc

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

## run: scan the bundled sample trail files with the built-in rules and print the alerts
run:
	$(CARGO) run --locked --quiet --bin trail-alerts -- scan $(SCAN_ARGS)

## bench: matcher throughput with 10 and 1,000 rules over the shared benchmark corpus
bench:
	$(CARGO) bench --locked --bench matcher

clean:
	$(CARGO) clean
