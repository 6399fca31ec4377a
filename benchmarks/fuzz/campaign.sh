#!/usr/bin/env bash
# One campaign per fuzz target, one at a time, at the lowest priority (the machine is shared):
#   bash benchmarks/fuzz/campaign.sh SECONDS_PER_TARGET OUT_DIR [targets...]
# Each target keeps what it finds in OUT_DIR/corpus-TARGET (the committed seeds stay as they are) and its
# log in OUT_DIR/TARGET.log; the last line of each log holds libFuzzer's final stats. Figures: fuzz.md.
set -u
secs=${1:-600}; out=${2:-/tmp/mc2export-fuzz}; shift 2 || true
targets=${*:-bundle checkpoint tokenizer image tar results}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
for t in $targets; do
  mkdir -p "$out/corpus-$t" "$out/crashes-$t"
  nice -n 19 python "$here/run.py" "$t" "$out/corpus-$t" "$here/corpus/$t" -max_total_time="$secs" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/crashes-$t/" \
    > "$out/$t.log" 2>&1
  echo "$t: exit $? $(grep -E 'stat::number_of_executed_units' "$out/$t.log") $(grep -E '^#[0-9]+.*cov:' "$out/$t.log" | tail -1)"
done
