#!/usr/bin/env bash
# `make lint`'s supply-chain gate: cargo-deny over the crate and the fuzz crate, offline.
# The RustSec advisory database comes from ../shared/advisory-db (a snapshot; see its
# SNAPSHOT.md), made into the one-commit Git repository cargo-deny expects, under target/.
# Without the snapshot the advisories check cannot run: that is said, and the other checks run.
set -euo pipefail
cd "$(dirname "$0")/.."
DENY=${DENY:-.venv/bin/cargo-deny}
SNAPSHOT=../shared/advisory-db
DB=target/advisory-db/advisory-db-3157b0e258782691
checks="bans licenses sources"
if [ -f "$SNAPSHOT/SNAPSHOT.md" ]; then
  if [ ! -d "$DB/.git" ]; then
    rm -rf "$DB"
    mkdir -p "$DB"
    cp -R "$SNAPSHOT"/. "$DB"/
    (cd "$DB" && git init -q && git add -A \
      && GIT_AUTHOR_DATE=2026-08-21T08:28:40 GIT_COMMITTER_DATE=2026-08-21T08:28:40 \
         git -c user.name=snapshot -c user.email=snapshot@localhost commit -q -m snapshot)
  fi
  checks="advisories $checks"
else
  echo "note: $SNAPSHOT is absent: the advisories check is not run (bans, licenses, sources are)"
fi
# The fuzz crate's dependencies (libfuzzer-sys) are fetched only here and by `make fuzz`.
cargo fetch --quiet --manifest-path fuzz/Cargo.toml
for manifest in Cargo.toml fuzz/Cargo.toml; do
  echo "cargo deny: $manifest ($checks)"
  # shellcheck disable=SC2086
  "$DENY" --manifest-path "$manifest" --offline check --hide-inclusion-graph $checks
done
