#!/usr/bin/env bash
# Runs every cargo-fuzz (libFuzzer, coverage-guided) target for SECONDS each:
#
#   bash tests/cargo-fuzz/run.sh 20
#
# Needs a nightly toolchain (libFuzzer's instrumentation is nightly-only); without one it
# prints a SKIPPED line and exits 0, so CI on a stable-only machine still passes. Installs
# cargo-fuzz if it is missing. A crash stops the run with a non-zero exit; libFuzzer's
# report and the crashing input (under tests/cargo-fuzz/artifacts/TARGET/) say what failed.
# New inputs that found new coverage land in the corpus directories; commit the small ones.
#
# Known library bugs the targets found are tolerated so that a run keeps looking for new
# ones; their inputs are in regressions/TARGET/ (see regressions/README.md). With
# SCAIDRIVE_FUZZ_STRICT=1 the targets fail on them too.
#
# Replay one input:        cargo +nightly fuzz run --fuzz-dir tests/cargo-fuzz -s none -a TARGET FILE
# Coverage of the corpus:  cargo +nightly fuzz coverage --fuzz-dir tests/cargo-fuzz TARGET
set -euo pipefail

secs="${1:?usage: run.sh SECONDS}"
here="$(cd "$(dirname "$0")" && pwd)"
targets=(config api_response control_protocol relpath planner)

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "SKIPPED cargo fuzz: no nightly toolchain"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

# -s none: no AddressSanitizer. The library forbids unsafe code (`unsafe_code = "forbid"`)
# and so do these targets, so ASan could only catch memory errors in the dependencies'
# unsafe code, at the price of a second, slower build of the whole dependency tree.
# -a: debug assertions, so integer overflow panics instead of wrapping silently.
# --release keeps runs fast; line tables (Cargo.toml) keep backtraces readable.
flags=(-s none -a --release --fuzz-dir "$here")

# One build of all targets; the runs below reuse it.
start=$(date +%s)
cargo +nightly fuzz build "${flags[@]}"
echo "cargo fuzz: built ${#targets[@]} targets in $(($(date +%s) - start)) s"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$here/corpus/$t"
  echo "== cargo fuzz: $t for ${secs}s"
  # Fuzz into a scratch directory, with the committed corpus as a second, read-only seed
  # directory: a run adds many inputs, and the committed seeds change only on purpose
  # (cargo fuzz cmin, then commit).
  rm -rf "${work:?}/$t" && mkdir -p "$work/$t"
  set +e
  # TMPDIR: the config target's scratch files go to the work directory, removed on exit.
  TMPDIR="$work" cargo +nightly fuzz run "${flags[@]}" "$t" "$work/$t" "$here/corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$work/$t.log" 2>&1
  status=$?
  set -e
  if [[ $status -ne 0 ]]; then
    tail -n 60 "$work/$t.log" >&2
    echo "cargo fuzz: $t FAILED (exit $status); the input is under $here/artifacts/$t/" >&2
    exit "$status"
  fi
  grep -E '^(#[0-9]+ +(INITED|DONE)|stat::(number_of_executed_units|new_units_added|peak_rss_mb))' \
    "$work/$t.log" || true
done
echo "cargo fuzz: ${#targets[@]} targets ran ${secs}s each, no crash"
