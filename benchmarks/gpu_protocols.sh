#!/usr/bin/env bash
# Full-protocol runs on a lent GPU machine, all at once, for SECONDS seconds at most; what
# finished (and the checkpoints of what did not) is packed into OUT_DIR to resume elsewhere.
# Usage: bash benchmarks/gpu_protocols.sh OUT_DIR [SECONDS] [RESUME_DIR]
#   RESUME_DIR: a folder holding an earlier run's calibration.tar.gz / liu_table1*.tar.* to continue.
set -u
OUT=${1:?OUT_DIR}; SECONDS_LEFT=${2:-420}; RESUME=${3:-}
WORK=/tmp/protocols; mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ -n "$RESUME" ]; then for f in "$RESUME"/*.tar.*; do tar -xf "$f" -C "$WORK"; done; fi

for variant in robust paper code monotonic oracle; do
  timeout "$SECONDS_LEFT" python3 benchmarks/gpu_protocols.py calibration --variant "$variant" --n 5000 \
      --out "$WORK/calibration" >"$WORK/calibration-$variant.log" 2>&1 &
done
timeout "$SECONDS_LEFT" python3 benchmarks/gpu_protocols.py liu-table1 --jobs 4 --out "$WORK/liu-table1" \
    >"$WORK/liu-table1.log" 2>&1 &
wait
pkill -f multiprocessing.spawn; sleep 3  # the table's worker processes outlive its timed-out parent

tail -n 3 "$WORK"/*.log
cd "$WORK"
tar -czf "$OUT/calibration.tar.gz" calibration calibration-*.log
tar -czf "$OUT/liu_table1.tar.gz" --exclude=history.csv liu-table1 liu-table1.log
find liu-table1 -name history.csv -print0 | tar -cJf "$OUT/liu_table1_histories.tar.xz" --null -T -
ls -la "$OUT"
