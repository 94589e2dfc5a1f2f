#!/usr/bin/env bash
# `make bench`: trail-alerts scan side by side with the floor (inflating alone) and the Python
# peer, on the benchmark corpus (200,000 records, about 250 MB of JSON), in one run.
# Prints hyperfine's table with ratios, then peak resident memory of each command, then the alert
# counts (which must agree with the Python peer's).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=target/bench
RECORDS=${RECORDS:-200000}
RUNS=${RUNS:-5}
ROUNDS=${ROUNDS:-10}
FOLDER_FILES=${FOLDER_FILES:-5000}
mkdir -p "$OUT"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need hyperfine || ! need libdeflate-gunzip || [ ! -x /usr/bin/time ]; then
  echo "== installing hyperfine, libdeflate-tools and time (Debian packages)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq hyperfine libdeflate-tools time >/dev/null
fi

# The corpus generator and the Python peer are the team's shared ones, kept in scripts/bench (the
# same bytes as the shared generator's); the records come from benches/data.
GEN=scripts/bench/make-corpus.py
PEER=scripts/bench/python-peer.py

# Generated inputs are written under a temporary name and renamed when whole, and named after the
# generator's own checksum, so that an interrupted run or a changed generator is never measured.
generated() { sha256sum "$@" | sha256sum | cut -c1-12; }
CORPUS="$OUT/corpus-$RECORDS-$(generated $GEN benches/data/invictus-records.json.gz).json.gz"
if [ ! -f "$CORPUS" ]; then
  python3 $GEN "$CORPUS.part" --records "$RECORDS"
  mv "$CORPUS.part" "$CORPUS"
fi

# Rule sets beside the built-in pack: one "root account used" rule (pins no eventName), 990
# rules each pinned to an eventName, and 990 rules of mixed shapes (scripts/bench/rule-sets.py).
ROOT="$OUT/root.yaml"; PINNED="$OUT/pinned-990.yaml"; MIXED="$OUT/mixed-990.yaml"
python3 scripts/bench/rule-sets.py root "$ROOT"
python3 scripts/bench/rule-sets.py pinned "$PINNED" 990
python3 scripts/bench/rule-sets.py mixed "$MIXED" 990

cargo build --locked --release --no-default-features --bin trail-alerts >/dev/null 2>&1 \
  || cargo build --locked --release --no-default-features --bin trail-alerts
BIN=target/release/trail-alerts
SCAN="$BIN scan --format jsonl"
# Real rule sets: SigmaHQ's CloudTrail rules that convert exactly (rules import sigma), and the
# optional packs.
SIGMA="$OUT/sigma-cloudtrail.yaml"
$BIN rules import sigma tests/fixtures/sigma/cloudtrail --out "$SIGMA" 2>/dev/null
PACKS="--rules builtin --rules builtin:security --rules builtin:self"

echo "== wall time ($RUNS runs each, $(nproc) cores)"
hyperfine -N --warmup 1 --runs "$RUNS" --export-markdown "$OUT/hyperfine.md" \
  -n floor "libdeflate-gunzip -c $CORPUS" \
  -n "gzip -dc" "gzip -dc $CORPUS" \
  -n "scan (builtin)" "$SCAN $CORPUS" \
  -n "scan (builtin + root rule)" "$SCAN --rules builtin --rules $ROOT $CORPUS" \
  -n "scan (builtin + 990 pinned)" "$SCAN --rules builtin --rules $PINNED $CORPUS" \
  -n "scan (builtin + 990 mixed)" "$SCAN --rules builtin --rules $MIXED $CORPUS" \
  -n "scan (builtin + security + self)" "$SCAN $PACKS $CORPUS" \
  -n "scan (builtin + SigmaHQ converted)" "$SCAN --rules builtin --rules $SIGMA $CORPUS" \
  -n python "python3 $PEER $CORPUS" >/dev/null
cat "$OUT/hyperfine.md"

echo
echo "== one core (taskset -c 0): what a Lambda with a fraction of a vCPU pays; User+System = CPU seconds"
# The corpus three times over (hard links) in one scan: rules are loaded once, as the function
# loads them once per cold start, so (three - one) / 2 is what one more object costs.
THRICE="$OUT/corpus-thrice"
mkdir -p "$THRICE"
for i in 1 2 3; do ln -f "$CORPUS" "$THRICE/corpus-$i.json.gz"; done
hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$OUT/one-core.json" \
  -n "floor, 1 core" "taskset -c 0 libdeflate-gunzip -c $CORPUS" \
  -n "scan (builtin), 1 core" "taskset -c 0 $SCAN $CORPUS" \
  -n "scan (builtin + 990 mixed), 1 core" "taskset -c 0 $SCAN --rules builtin --rules $MIXED $CORPUS" \
  -n "scan (builtin + security + self), 1 core" "taskset -c 0 $SCAN $PACKS $CORPUS" \
  -n "scan (builtin + SigmaHQ converted), 1 core" "taskset -c 0 $SCAN --rules builtin --rules $SIGMA $CORPUS" \
  -n "scan (builtin), corpus x3, 1 core" "taskset -c 0 $SCAN $THRICE" \
  -n "scan (builtin + 990 mixed), corpus x3, 1 core" "taskset -c 0 $SCAN --rules builtin --rules $MIXED $THRICE" \
  2>&1 | grep -E "Benchmark|Time|faster"
python3 - "$OUT/one-core.json" <<'PY'
import json, sys
r = {x["command"]: x["mean"] * 1000 for x in json.load(open(sys.argv[1]))["results"]}
floor = r["floor, 1 core"]
pack = (r["scan (builtin), corpus x3, 1 core"] - r["scan (builtin), 1 core"]) / 2
mixed = (r["scan (builtin + 990 mixed), corpus x3, 1 core"] - r["scan (builtin + 990 mixed), 1 core"]) / 2
print(f"one core, vs the floor ({floor:.1f} ms): scan (builtin) {r['scan (builtin), 1 core'] / floor:.2f}x")
base = r["scan (builtin), 1 core"]
print(f"one core, vs the built-in pack: + security + self {r['scan (builtin + security + self), 1 core'] / base:.2f}x, "
      f"+ SigmaHQ converted {r['scan (builtin + SigmaHQ converted), 1 core'] / base:.2f}x")
print(f"one more object with the rules loaded (the function's steady state): builtin {pack:.1f} ms, "
      f"+ 990 mixed {mixed:.1f} ms ({mixed / pack:.2f}x)")
PY

echo
echo "== many objects: a day of an organisation trail, $FOLDER_FILES gzip'd files (scripts/bench/make-folder.py),"
echo "   against libdeflate-gunzip inflating the same files one after another (xargs: a few processes)"
FOLDER="$OUT/folder-$FOLDER_FILES-$(generated $GEN benches/data/invictus-records.json.gz scripts/bench/make-folder.py)"
if [ ! -d "$FOLDER" ]; then
  rm -rf "$FOLDER.part"
  python3 scripts/bench/make-folder.py "$FOLDER.part" --files "$FOLDER_FILES"
  mv "$FOLDER.part" "$FOLDER"
fi
find "$FOLDER" -name '*.json.gz' | sort >"$OUT/folder-files.txt"
hyperfine -N --warmup 1 --runs "$RUNS" \
  -n "floor, files in turn" "xargs -a $OUT/folder-files.txt libdeflate-gunzip -c" \
  -n "scan (builtin), folder" "$SCAN $FOLDER" \
  -n "scan (builtin), folder, 1 core" "taskset -c 0 $SCAN $FOLDER" \
  2>&1 | grep -E "Benchmark|Time|faster"

# The validating floor (scripts/bench/ceiling): libdeflate in process, then the whole JSON checked
# by serde_json or sonic-rs, building nothing; no splitting, peeking or matching. What any reader
# that checks every byte must spend at least: where it is above a goal, that goal cannot be met
# on this machine.
cargo build --locked --release --manifest-path scripts/bench/ceiling/Cargo.toml \
  --target-dir target/ceiling >/dev/null 2>&1 \
  || cargo build --locked --release --manifest-path scripts/bench/ceiling/Cargo.toml --target-dir target/ceiling
VFLOOR=target/ceiling/release/validating-floor
# It must refuse what a reader refuses, or it is no floor: a bad literal, and with sonic-rs a byte
# that is not UTF-8.
printf '{"Records":[{"a":[1,2,tru]}]}' | gzip >"$OUT/bad-literal.json.gz"
printf '{"Records":[{"a":"\xff"}]}' | gzip >"$OUT/bad-utf8.json.gz"
for bad in "serde_json bad-literal" "sonic-rs bad-literal" "sonic-rs bad-utf8"; do
  read -r parser input <<<"$bad"
  if $VFLOOR --parser "$parser" "$OUT/$input.json.gz" 2>/dev/null; then
    echo "bench.sh: the validating floor ($parser) took $input.json.gz for valid" >&2
    exit 1
  fi
done

echo
echo "== the goals' figures, side by side in rounds (scripts/bench/rounds.py: every command once in"
echo "   turn, $ROUNDS rounds after a warm-up; medians, the fastest beside them; CPU = user + system)"
lscpu | grep -E '^(Model name|L1d|L2|L3)' | sed 's/  */ /g'
python3 scripts/bench/rounds.py --rounds "$ROUNDS" --ratios --json "$OUT/rounds.json" \
  "floor=libdeflate-gunzip -c $CORPUS" \
  "scan=$SCAN $CORPUS" \
  "floor, 1 core=taskset -c 0 libdeflate-gunzip -c $CORPUS" \
  "scan, 1 core=taskset -c 0 $SCAN $CORPUS" \
  "scan + mixed, 1 core=taskset -c 0 $SCAN --rules builtin --rules $MIXED $CORPUS" \
  "scan + Sigma, 1 core=taskset -c 0 $SCAN --rules builtin --rules $SIGMA $CORPUS" \
  "floor folder=xargs -a $OUT/folder-files.txt libdeflate-gunzip -c" \
  "scan folder=$SCAN $FOLDER" \
  "validating floor folder (serde_json)=$VFLOOR --parser serde_json --files-from $OUT/folder-files.txt" \
  "validating floor folder (sonic-rs)=$VFLOOR --parser sonic-rs --files-from $OUT/folder-files.txt" \
  "validating floor folder, 2 threads=$VFLOOR --parser sonic-rs --threads 2 --files-from $OUT/folder-files.txt"

echo
echo "== the validating floor's parser part with simdjson (C++, the fastest validating parser known),"
echo "   beside the Rust parsers above (scripts/bench/simdjson-floor.py; the files inflated first)"
if [ -x .venv/bin/python ] \
  && { .venv/bin/python -c 'import simdjson' 2>/dev/null || .venv/bin/pip install -q pysimdjson; }; then
  .venv/bin/python scripts/bench/simdjson-floor.py "$OUT/folder-files.txt"
else
  echo "simdjson: not measured (no .venv from make setup, or pysimdjson could not be installed)"
fi

echo
echo "== peak resident memory"
peak() { /usr/bin/time -f "%M" "$@" 2>&1 >/dev/null | tail -1; }
printf "%-28s %8s MiB\n" floor "$(( $(peak libdeflate-gunzip -c "$CORPUS") / 1024 ))"
printf "%-28s %8s MiB\n" "scan (builtin)" "$(( $(peak $SCAN "$CORPUS") / 1024 ))"
printf "%-28s %8s MiB\n" "scan (builtin + 990 mixed)" "$(( $(peak $SCAN --rules builtin --rules "$MIXED" "$CORPUS") / 1024 ))"
printf "%-28s %8s MiB\n" python "$(( $(peak python3 $PEER "$CORPUS") / 1024 ))"

echo
echo "== alerts (the rule mixes raise none of their own on the corpus: the four counts agree; the"
echo "   Python peer knows only the Backup and Outposts rules, so it agrees with the fifth)"
echo "scan (builtin):              $($SCAN "$CORPUS" | wc -l)"
echo "scan (builtin + root rule):  $($SCAN --rules builtin --rules "$ROOT" "$CORPUS" | wc -l)"
echo "scan (builtin + 990 pinned): $($SCAN --rules builtin --rules "$PINNED" "$CORPUS" | wc -l)"
echo "scan (builtin + 990 mixed):  $($SCAN --rules builtin --rules "$MIXED" "$CORPUS" | wc -l)"
echo "scan (backup-*, outposts-*):  $($SCAN --rule 'backup-*' --rule 'outposts-*' "$CORPUS" | wc -l)"
echo "python peer:                 $(python3 $PEER "$CORPUS")"

echo
echo "== cold start of the Lambda function (process start to its first request for an event)"
cargo build --locked --release --bin trail-alerts-lambda >/dev/null 2>&1 \
  || cargo build --locked --release --bin trail-alerts-lambda
python3 scripts/bench/cold-start.py target/release/trail-alerts-lambda --runs 30 \
  --rules builtin --rules "builtin,$MIXED"

echo
echo "== binary sizes (release, x86_64 here)"
ls -l "$BIN" target/release/trail-alerts-lambda | awk '{printf "%-40s %6.1f MB\n", $NF, $5/1e6}'
