#!/bin/sh
# N glmrun processes on one machine (or one per host with a shared folder), no scheduler:
#   sh config/deploy/xargs.sh [CONFIG] [N]        (N defaults to 4)
#   USE_GNU_PARALLEL=1 sh config/deploy/xargs.sh [CONFIG] [N]     (the same with GNU parallel)
# Volumes: the input readable by every process, one output folder for all (each process
# appends to its own describe.shard-I-of-N.jsonl). Rerun the same line to resume; run
# `glmrun export CONFIG` for the merged result.
CONFIG=${1:-config/deploy/glmrun.yaml}
N=${2:-4}
if [ "${USE_GNU_PARALLEL:-0}" = 1 ]; then
  seq 0 $((N - 1)) | parallel -j "$N" glmrun run "$CONFIG" --shard "{}/$N" -q
else
  seq 0 $((N - 1)) | xargs -P "$N" -I{} glmrun run "$CONFIG" --shard "{}/$N" -q
fi
