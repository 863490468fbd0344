#!/bin/bash
# A Slurm job array: task I of N runs `glmrun run --shard I/N`.
#   sbatch config/deploy/slurm-array.sh [CONFIG] [N]    (CONFIG defaults to config/deploy/glmrun.yaml,
#                                                        N to 8, the tasks of --array=0-7 below)
# N is the number of shards, fixed for the job's life: not SLURM_ARRAY_TASK_COUNT, which is 1
# when a task is resubmitted alone (sbatch --array=3 ...), turning --shard 3/8 into 3/1 (refused)
# and 0/8 into 0/1 (the whole job, beside the other shards: their items sent twice). Another
# array size: sbatch --array=0-15 config/deploy/slurm-array.sh CONFIG 16.
# Volumes: the input and the output folder on the cluster's shared filesystem, the same paths
# on every node (/data/input, /data/out in glmrun.yaml). Each task writes its own
# describe.shard-I-of-N.jsonl; `glmrun export CONFIG` merges them. A failed or preempted task
# is resubmitted alone (sbatch --array=I slurm-array.sh CONFIG N) and sends only what its shard
# has left.
#SBATCH --job-name=glmrun-describe
#SBATCH --array=0-7
#SBATCH --cpus-per-task=1
#SBATCH --mem=512M
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --output=glmrun-%A_%a.log
set -u
CONFIG=${1:-config/deploy/glmrun.yaml}
N=${2:-8}
# ZHIPUAI_API_KEY comes from the submitting environment (sbatch exports it by default).
glmrun run "$CONFIG" --shard "${SLURM_ARRAY_TASK_ID}/${N}" --log-format json
rc=$?
# 1 = finished with some error records (glmrun status tells which): the task did its work.
if [ "$rc" -eq 1 ]; then exit 0; fi
exit "$rc"
