#!/usr/bin/env bash
# Several machines, one command per machine (the same on each, but for MACHINE_RANK):
#   MAIN_ADDR=10.0.0.1 NUM_MACHINES=2 MACHINE_RANK=0 bash launch/multinode.sh configs/X.yaml [key=value ...]
#   MAIN_ADDR=10.0.0.1 NUM_MACHINES=2 MACHINE_RANK=1 bash launch/multinode.sh configs/X.yaml [key=value ...]
# Optional: GPUS_PER_MACHINE (default: every visible GPU), MAIN_PORT (29500),
# ACCELERATE_CONFIG (launch/accelerate/zero3.yaml; ddp.yaml, zero2.yaml, zero3_offload.yaml and
# fsdp.yaml work the same way). Every machine needs the same checkout, the same data and a shared
# or identical run.output_dir: rank 0 writes the curriculum pool and the checkpoints' metadata,
# and every rank reads the pool back from it.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${MAIN_ADDR:?set MAIN_ADDR to the address of machine rank 0}"
: "${NUM_MACHINES:?set NUM_MACHINES}"
: "${MACHINE_RANK:?set MACHINE_RANK (0 .. NUM_MACHINES-1)}"
config=${1:?usage: launch/multinode.sh CONFIG.yaml [key=value ...]}
shift
gpus=${GPUS_PER_MACHINE:-$(nvidia-smi --list-gpus | wc -l)}
exec accelerate launch \
  --config_file "${ACCELERATE_CONFIG:-launch/accelerate/zero3.yaml}" \
  --num_machines "$NUM_MACHINES" \
  --num_processes $((NUM_MACHINES * gpus)) \
  --machine_rank "$MACHINE_RANK" \
  --main_process_ip "$MAIN_ADDR" \
  --main_process_port "${MAIN_PORT:-29500}" \
  -m train --config "$config" "$@"
