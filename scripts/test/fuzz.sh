#!/usr/bin/env bash
# `make fuzz`: run each cargo-fuzz target for FUZZ_SECONDS (default 180), seeded from the fixtures.
# cargo-fuzz needs nightly compiler flags; this machine has one stable toolchain, so
# RUSTC_BOOTSTRAP=1 lets it accept them (the sanitizer runtime ships with the standard library).
# A crash is saved under fuzz/artifacts/<target>/ and must become a regression test.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${FUZZ_SECONDS:-180}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1

seed() { mkdir -p "fuzz/corpus/$1"; }
seed log_reader; seed pattern; seed payload
find events/trails -name '*.json.gz' -exec cp {} fuzz/corpus/log_reader/ \;
cp tests/fixtures/real/invictus/*.json tests/fixtures/real/trailscraper/*.gz fuzz/corpus/log_reader/
# The other shapes the command line reads: JSON arrays of records (Stratus Red Team logs).
cp tests/fixtures/real/stratus/*.json fuzz/corpus/log_reader/
cp events/*.json fuzz/corpus/payload/
python3 - <<'PY'
import json, os
d = json.load(open("tests/fixtures/patterns/conformance.json"))
for i, c in enumerate(d["cases"]):
    ev = c["event"] if isinstance(c["event"], dict) else d["events"][c["event"]]
    with open(f"fuzz/corpus/pattern/case{i}", "wb") as f:
        f.write(json.dumps(c["pattern"]).encode() + b"\0" + json.dumps(ev).encode())
PY

for target in log_reader pattern payload; do
  echo "== $target ($SECONDS_EACH s)"
  cargo fuzz run "$target" "fuzz/corpus/$target" -- -max_total_time="$SECONDS_EACH" -max_len=65536 2>&1 \
    | grep -E "^#[0-9]+.*(DONE|pulse)|Done [0-9]+ runs|SUMMARY|ERROR|panicked" | tail -3
done
