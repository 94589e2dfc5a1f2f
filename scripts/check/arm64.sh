#!/usr/bin/env bash
# `make check-arm64`: the reader's NEON string search, run on arm64 under qemu-user (the Lambda
# function runs on arm64; this machine is x86_64), then the command line built for arm64 as the
# function is, against the host's. Installs the aarch64 musl and gnu targets (rustup), qemu-user
# and the arm64 C library (Debian packages) when missing; the string search links with rust-lld,
# the command line with cargo-lambda's zig (from `make setup`).
set -euo pipefail
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
cd "$(dirname "$0")/arm64-strings"
TARGET=aarch64-unknown-linux-musl
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
if ! command -v qemu-aarch64 >/dev/null 2>&1; then
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq qemu-user >/dev/null
fi
export CARGO_TARGET_DIR=../../../target/arm64-strings
RUSTFLAGS="-C linker=rust-lld -C linker-flavor=ld.lld" cargo build --quiet --release --target "$TARGET"
cargo run --quiet --release
qemu-aarch64 "$CARGO_TARGET_DIR/$TARGET/release/arm64-strings"

# Then the command line itself, built for arm64 as the function is (cargo-lambda, zig compiling
# the two C libraries, mimalloc and libdeflate), run under qemu-user over the sample trails, the
# real fixtures and damaged gzip (one file cut short, one with its CRC-32 changed: the whole-file
# path and its fall-back to the streaming reader), with the built-in pack and the optional packs:
# its output and its messages must be the host's, byte for byte.
cd ../../..
if [ ! -d /usr/aarch64-linux-gnu/lib ]; then
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq libc6-arm64-cross >/dev/null
fi
export PATH="$PWD/.venv/bin:$PATH"
unset CARGO_TARGET_DIR
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu \
  || rustup target add aarch64-unknown-linux-gnu
cargo-lambda lambda build --quiet --release --arm64 --bin trail-alerts --no-default-features
cargo build --quiet --release --no-default-features --bin trail-alerts
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/damaged"
sample=$(find events/trails -name '*.json.gz' | sort | head -1)
head -c "$(( $(stat -c %s "$sample") / 2 ))" "$sample" >"$WORK/damaged/cut.json.gz"
python3 -c 'import sys; d = bytearray(open(sys.argv[1], "rb").read()); d[-6] ^= 1; open(sys.argv[2], "wb").write(d)' \
  "$sample" "$WORK/damaged/crc.json.gz"
compared=0
for input in events/trails tests/fixtures/real "$WORK/damaged"; do
  for rules in "--rules builtin" "--rules builtin --rules builtin:security --rules builtin:self"; do
    set +e
    qemu-aarch64 -L /usr/aarch64-linux-gnu target/lambda/trail-alerts/bootstrap \
      scan --format jsonl $rules "$input" >"$WORK/arm.out" 2>"$WORK/arm.err"
    arm=$?
    target/release/trail-alerts scan --format jsonl $rules "$input" >"$WORK/host.out" 2>"$WORK/host.err"
    host=$?
    set -e
    # Timings aside, the messages must match too.
    strip() { sed -E 's/[0-9.]+ ?(ms|s)\b//g' "$1"; }
    if [ "$arm" != "$host" ] || ! cmp -s "$WORK/arm.out" "$WORK/host.out" \
      || ! cmp -s <(strip "$WORK/arm.err") <(strip "$WORK/host.err"); then
      echo "check-arm64: arm64 and host differ on $input ($rules): exit $arm/$host" >&2
      diff <(strip "$WORK/arm.err") <(strip "$WORK/host.err") >&2 || true
      exit 1
    fi
    compared=$((compared + 1))
  done
done
echo "check-arm64: the arm64 command line gives the host's output and messages on $compared scans (samples, real fixtures, damaged gzip)"
