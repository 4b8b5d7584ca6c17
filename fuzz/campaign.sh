#!/usr/bin/env bash
# A long fuzz campaign (docs/reliability.md, "A long campaign"): every target in turn for
# SECS seconds (default 600), one process each, from the committed seeds plus the corpus
# grown by earlier campaigns (target/fuzz-corpus/<target>, kept out of the repository), and a
# table of what each reached: executions, coverage (libFuzzer's `cov` edges and `ft`
# features), the corpus, the coverage after the first tenth of the run, and how far into the
# run the last new edge was found (near 100 %: coverage was still growing).
#
# Usage: fuzz/campaign.sh            (8 targets x 10 minutes)
#   SECS=3600 fuzz/campaign.sh       (an hour per target)
#   TARGETS="redis_wire ws_frames" fuzz/campaign.sh
#   LOGS=dir                         (libFuzzer's logs; default a new temp dir)
# A crash, failed property, leak or timeout stops the campaign with the input in
# fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
SECS=${SECS:-600}
LOGS=${LOGS:-$(mktemp -d -t hubbub-fuzz.XXXXXX)}
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || { echo "error: cargo-fuzz is missing: cargo install cargo-fuzz --locked --version 0.13.2" >&2; exit 1; }
TARGETS=${TARGETS:-$(cargo fuzz list)}
nice -n 10 cargo fuzz build --release
for t in $TARGETS; do
  mkdir -p "../target/fuzz-corpus/$t"
  echo "==> $t for ${SECS}s (log: $LOGS/$t.log)"
  nice -n 10 cargo fuzz run --release "$t" "../target/fuzz-corpus/$t" "corpus/$t" -- \
    -max_total_time="$SECS" -max_len=4096 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    >"$LOGS/$t.log" 2>&1 || { tail -n 40 "$LOGS/$t.log" >&2; echo "error: $t failed; the input is in fuzz/artifacts/$t/" >&2; exit 1; }
done
echo
echo "| target | executions | exec/s | cov | ft | corpus | cov / ft after the first tenth | last new cov at | last new ft at |"
echo "|---|---:|---:|---:|---:|---|---|---:|---:|"
for t in $TARGETS; do
  # libFuzzer's status lines: "#<runs> <KIND> cov: C ft: F corp: N/SIZE ... exec/s: E ..."
  awk -v t="$t" '
    match($0, /^#[0-9]+/) {
      runs = substr($0, 2, RLENGTH - 1) + 0
      for (i = 1; i <= NF; i++) {
        if ($i == "cov:") cov = $(i + 1) + 0
        if ($i == "ft:") ft = $(i + 1) + 0
        if ($i == "corp:") corp = $(i + 1)
        if ($i == "exec/s:") eps = $(i + 1) + 0
      }
      n++; R[n] = runs; C[n] = cov; F[n] = ft
      if ($2 == "DONE") { total = runs; fc = cov; ff = ft; fcorp = corp; feps = eps }
    }
    END {
      if (!total) { print "| `" t "` | (no DONE line) |"; exit }
      for (i = 1; i <= n; i++) {
        if (R[i] <= total / 10) { ec = C[i]; ef = F[i] }
        if (!cset && C[i] == fc) { cat_ = R[i]; cset = 1 }
        if (!fset && F[i] == ff) { fat = R[i]; fset = 1 }
      }
      split(fcorp, cp, "/")
      printf "| `%s` | %d | %d | %d | %d | %s inputs, %s | %d / %d | %d %% | %d %% |\n", t, total, feps, fc, ff, cp[1], cp[2], ec, ef, 100 * cat_ / total, 100 * fat / total
    }' "$LOGS/$t.log"
done
