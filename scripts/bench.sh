#!/usr/bin/env bash
# `make bench`: trail-alerts scan side by side with the floor (inflating alone) and the Python
# peer, on the shared benchmark corpus (200,000 records, about 250 MB of JSON), in one run.
# Prints hyperfine's table with ratios, then peak resident memory of each command, then the alert
# counts (which must agree with the Python peer's).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/bench
RECORDS=${RECORDS:-200000}
RUNS=${RUNS:-5}
mkdir -p "$OUT"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need hyperfine || ! need libdeflate-gunzip; then
  echo "== installing hyperfine and libdeflate-tools (Debian packages)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq hyperfine libdeflate-tools >/dev/null
fi

CORPUS="$OUT/corpus-$RECORDS.json.gz"
[ -f "$CORPUS" ] || python3 ../shared/bench/make-corpus.py "$CORPUS" --records "$RECORDS"

# 1,000 rules: the built-in pack plus 990 generated rules on other eventNames.
RULES1000="$OUT/generated-990.yaml"
python3 - "$RULES1000" <<'PY'
import sys
ops = ["errorCode: [{exists: true}]", "userIdentity: {type: [{anything-but: Root}]}",
       "sourceIPAddress: [{cidr: 10.0.0.0/8}]", "requestParameters: {bucketName: [{prefix: prod-}]}",
       "awsRegion: [{wildcard: 'us-*-1'}]"]
with open(sys.argv[1], "w") as f:
    f.write("rules:\n")
    for i in range(990):
        f.write(f"  - id: generated-{i}\n    description: generated rule {i}\n    severity: low\n"
                f"    pattern: {{eventName: [GeneratedCall{i}], {ops[i % len(ops)]}}}\n")
PY

cargo build --locked --release --bin trail-alerts >/dev/null 2>&1 || cargo build --locked --release --bin trail-alerts
BIN=target/release/trail-alerts

echo "== wall time ($RUNS runs each, $(nproc) cores)"
hyperfine -N --warmup 1 --runs "$RUNS" --export-markdown "$OUT/hyperfine.md" \
  -n floor "libdeflate-gunzip -c $CORPUS" \
  -n "gzip -dc" "gzip -dc $CORPUS" \
  -n "scan (builtin)" "$BIN scan --format jsonl $CORPUS" \
  -n "scan (1,000 rules)" "$BIN scan --format jsonl --rules builtin --rules $RULES1000 $CORPUS" \
  -n python "python3 ../shared/bench/python_baseline.py $CORPUS" >/dev/null
cat "$OUT/hyperfine.md"

echo
echo "== peak resident memory"
peak() { /usr/bin/time -f "%M" "$@" 2>&1 >/dev/null | tail -1; }
printf "%-22s %8s MiB\n" floor "$(( $(peak libdeflate-gunzip -c "$CORPUS") / 1024 ))"
printf "%-22s %8s MiB\n" "scan (builtin)" "$(( $(peak "$BIN" scan --format jsonl "$CORPUS") / 1024 ))"
printf "%-22s %8s MiB\n" "scan (1,000 rules)" "$(( $(peak "$BIN" scan --format jsonl --rules builtin --rules "$RULES1000" "$CORPUS") / 1024 ))"
printf "%-22s %8s MiB\n" python "$(( $(peak python3 ../shared/bench/python_baseline.py "$CORPUS") / 1024 ))"

echo
echo "== alerts"
echo "scan (builtin):     $("$BIN" scan --format jsonl "$CORPUS" | wc -l)"
echo "scan (1,000 rules): $("$BIN" scan --format jsonl --rules builtin --rules "$RULES1000" "$CORPUS" | wc -l)"
echo "python peer:        $(python3 ../shared/bench/python_baseline.py "$CORPUS")"
