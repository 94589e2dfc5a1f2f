#!/usr/bin/env bash
# `make check-arm64`: the reader's NEON string search, run on arm64 under qemu-user (the Lambda
# function runs on arm64; this machine is x86_64). Installs the aarch64 musl target (rustup) and
# qemu-user (Debian package) when missing; links with rust-lld, so no cross C toolchain is needed.
set -euo pipefail
cd "$(dirname "$0")/arm64-strings"
TARGET=aarch64-unknown-linux-musl
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
if ! command -v qemu-aarch64 >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq qemu-user >/dev/null
fi
export CARGO_TARGET_DIR=../../target/arm64-strings
RUSTFLAGS="-C linker=rust-lld -C linker-flavor=ld.lld" cargo build --quiet --release --target "$TARGET"
cargo run --quiet --release
qemu-aarch64 "$CARGO_TARGET_DIR/$TARGET/release/arm64-strings"
