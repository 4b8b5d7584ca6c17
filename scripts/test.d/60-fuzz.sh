#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz / libFuzzer) of every parser a client or a peer
# reaches: a bounded run of each target in fuzz/ (HUBBUB_FUZZ_SECS seconds each, 20 by
# default), starting from the committed seed corpus. A crash, a failed property or a leak
# fails the suite and leaves the input in fuzz/artifacts/<target>/. Long campaigns:
# docs/reliability.md.
#
# cargo-fuzz needs nightly compiler flags (-Zsanitizer, sanitizer coverage); the stable
# toolchain accepts them with RUSTC_BOOTSTRAP=1, set for these builds only.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

ensure_apt g++ g++   # libFuzzer's C++ runtime, built by libfuzzer-sys
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "==> cargo install cargo-fuzz --locked"
  cargo install cargo-fuzz --locked --version 0.13.2
fi

secs=${HUBBUB_FUZZ_SECS:-20}
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list)
echo "==> cargo fuzz build (address sanitizer)"
nice -n 10 cargo fuzz build --release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in $targets; do
  echo "==> cargo fuzz run $target (${secs}s)"
  # A scratch corpus first: inputs found here stay out of the committed seeds.
  mkdir -p "$work/$target"
  status=0
  nice -n 10 cargo fuzz run --release "$target" "$work/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$secs" -max_len=4096 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    >"$work/$target.log" 2>&1 || status=$?
  grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|==[0-9]+==|SUMMARY|thread .* panicked)' "$work/$target.log" || true
  if [ "$status" != 0 ]; then
    tail -n 40 "$work/$target.log" >&2
    echo "error: fuzz target $target failed; the input is in fuzz/artifacts/$target/ (reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run $target <file>)" >&2
    exit 1
  fi
done
echo "==> every fuzz target ran ${secs}s without a failure"
