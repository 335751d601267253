#!/usr/bin/env bash
# The shipped model's training, end to end (docs/RESULTS.md): data, the four compact stages, anchors.
# Resumable: rerun the script after an interruption and every finished stage is kept, an interrupted one
# continues from its last checkpoint (`--resume`).
#   usage: docs/scripts/train_compact.sh DATA_DIR RUNS_DIR
set -euo pipefail
DATA="${1:-data/synth}"
RUNS="${2:-runs}"
IM2HANDS="${IM2HANDS:-im2hands}"
export OMP_WAIT_POLICY=PASSIVE

# 1,200 training + 64 validation samples, seed 1 (test splits use seeds 101-103)
$IM2HANDS synth --out "$DATA" --split train val --num 1200 64 --seed 1 --workers 2 --points 50000 --no-progress

stage() {   # stage NAME OUT [extra args...]: train unless OUT holds a finished run
    local name="$1" out="$2"; shift 2
    if [ -f "$out/done" ]; then echo "[skip] $name: $out is finished"; return 0; fi
    local resume=()
    [ -f "$out/last.pt" ] && resume=(--resume)
    $IM2HANDS train "$name" --preset compact --data "$DATA" --out "$out" --no-progress "${resume[@]}" "$@"
    touch "$out/done"
}

stage halo "$RUNS/halo"
stage init-occ "$RUNS/init" --init-from "$RUNS/halo/best.pt"
# RefOcc's anchors: InitOcc's meshes from the GT keypoints' bone transforms (the preset's transforms_from)
$IM2HANDS train anchors --checkpoint "$RUNS/init/best.pt" --data "$DATA" --transforms-from gt --name gt --limit 600 --no-progress
stage kpts-ref "$RUNS/kpts" --init-from "$RUNS/init/best.pt"
# bfloat16 autocast: RefOcc's step is 2.1x faster on a CPU with AVX512-BF16 (docs/TRAINING.md); drop
# --precision bf16 on a CPU without it (the preset's default runs float32 on the CPU)
stage ref-occ "$RUNS/ref" --init-from "$RUNS/init/best.pt" --anchors-dir "$DATA/anchors/gt" --precision bf16
