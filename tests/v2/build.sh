#!/usr/bin/env bash
# Builds the binary of the release users have deployed their stacks with (SPEC v2, commit
# f63c4d2, the last one landed before SPEC v3) as target/debug/tap-v2, for the migration test.
# Its source comes from git history; its package is renamed (binary `tap-v2`, library still
# `tap`) so that it builds in this target directory beside the current tap, sharing the compiled
# dependencies (about 2 minutes on 2 cores instead of a cold build).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
commit=${TAP_V2_COMMIT:-f63c4d2}
target=${CARGO_TARGET_DIR:-$here/target}
src=$target/v2-src
out=$target/debug/tap-v2
if [[ -x $out && -f $src/.commit && $(cat "$src/.commit") == "$commit" ]]; then
  echo "$out"
  exit 0
fi
rm -rf "$src"
mkdir -p "$src"
git -C "$here" archive "$commit" Cargo.toml Cargo.lock src | tar -x -C "$src"
python3 - "$src/Cargo.toml" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
s = s.replace('name = "tap"', 'name = "tap-v2"', 1)
s = s.replace('[dependencies]', '[lib]\nname = "tap"\npath = "src/lib.rs"\n\n[[bin]]\nname = "tap-v2"\npath = "src/main.rs"\n\n[workspace]\n\n[dependencies]', 1)
open(p, "w").write(s)
PY
cargo build --quiet --manifest-path "$src/Cargo.toml" --target-dir "$target" --bin tap-v2 >&2
echo "$commit" >"$src/.commit"
echo "$out"
