#!/usr/bin/env bash
# `.ci/run`: the steps that run offline, run again as on a fresh machine — CARGO_HOME pointed at
# an empty directory (no registry index, no downloaded crate) — once with the advisory snapshot
# beside the checkout and once without it. A step that passes only because earlier work left
# crates in ~/.cargo fails here. Every script or Makefile line that works offline (`--offline`,
# CARGO_NET_OFFLINE) must be listed in STEPS, or this check fails too.
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=(scripts/check/deny.sh)

known=(-e scripts/check/fresh.sh)
for step in "${STEPS[@]}"; do known+=(-e "$step"); done
unlisted=$(grep -l -E -e '--offline|CARGO_NET_OFFLINE' Makefile scripts/*/*.sh scripts/*/*.py .ci/run \
  | grep -v -x -F "${known[@]}" || true)
if [ -n "$unlisted" ]; then
  echo "error: offline steps not checked on an empty CARGO_HOME (add them to STEPS in $0): $unlisted" >&2
  exit 1
fi

home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
for step in "${STEPS[@]}"; do
  echo "== $step, CARGO_HOME empty, advisory snapshot beside the checkout"
  CARGO_HOME=$home "$step"
  rm -rf "${home:?}"/*
  echo "== $step, CARGO_HOME empty, no advisory snapshot"
  CARGO_HOME=$home ADVISORY_SNAPSHOT="$home/no-advisory-db" "$step"
done
