#!/usr/bin/env bash
# `make lint`'s supply-chain gate: cargo-deny over the crate and the fuzz crate, offline.
#
# `cargo deny --offline` runs `cargo metadata` over the whole lock file, which needs the source
# of every crate of every target platform (windows-sys, wasm-bindgen, redox_syscall…) in the
# local registry, while `cargo build` and `cargo test` download only the host's. So both crates'
# dependencies are fetched here first, for every platform (`cargo fetch --locked` with no
# --target), and the gate never depends on what earlier work left in ~/.cargo. `.ci/run` proves
# it by running this script a second time with CARGO_HOME pointed at an empty directory. Both lock
# files are committed (fuzz/Cargo.lock pins the crate's dependencies at Cargo.lock's versions), so
# the graph checked is the one in the repository, not whatever the index offers on the day.
#
# The RustSec advisory database comes from ../shared/advisory-db (a snapshot; see its
# SNAPSHOT.md; ADVISORY_SNAPSHOT names another), made into the one-commit Git repository
# cargo-deny expects, under target/, and made anew whenever the snapshot changes. Without the
# snapshot the advisories check cannot run: that is said, and the other checks run.
set -euo pipefail
cd "$(dirname "$0")/../.."
DENY=${DENY:-.venv/bin/cargo-deny}
SNAPSHOT=${ADVISORY_SNAPSHOT:-../shared/advisory-db}
DB=target/advisory-db/advisory-db-3157b0e258782691
checks="bans licenses sources"
if [ ! -x "$DENY" ]; then
  echo "error: $DENY is missing: run \`make setup\` (it installs cargo-deny into .venv from requirements-dev.txt)" >&2
  exit 1
fi
if [ -f "$SNAPSHOT/SNAPSHOT.md" ]; then
  # The copy is remade when the snapshot's own description changes (a new snapshot says so).
  if [ ! -d "$DB/.git" ] || ! cmp -s "$SNAPSHOT/SNAPSHOT.md" "$DB/SNAPSHOT.md"; then
    rm -rf "$DB"
    mkdir -p "$DB"
    cp -R "$SNAPSHOT"/. "$DB"/
    (cd "$DB" && git init -q && git add -A \
      && GIT_AUTHOR_DATE=2026-08-21T08:28:40 GIT_COMMITTER_DATE=2026-08-21T08:28:40 \
         git -c user.name=snapshot -c user.email=snapshot@localhost commit -q -m snapshot)
  fi
  checks="advisories $checks"
else
  echo "note: $SNAPSHOT is absent: the advisories check is not run (bans, licenses, sources are)."
  echo "      To run it, put a RustSec advisory-db checkout (or the snapshot) there, or name one in ADVISORY_SNAPSHOT."
fi
for manifest in Cargo.toml fuzz/Cargo.toml scripts/bench/ceiling/Cargo.toml; do
  # Every platform's crates, as the lock files pin them (see above).
  cargo fetch --locked --quiet --manifest-path "$manifest"
done
for manifest in Cargo.toml fuzz/Cargo.toml scripts/bench/ceiling/Cargo.toml; do
  echo "cargo deny: $manifest ($checks)"
  # shellcheck disable=SC2086
  "$DENY" --manifest-path "$manifest" --offline check --hide-inclusion-graph $checks
done
