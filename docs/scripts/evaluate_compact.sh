#!/usr/bin/env bash
# docs/RESULTS.md's tables: HALO, InitOcc and the full model on three test splits (seeds 101-103, never used
# in training), with ground-truth and with noisy keypoints (+ KptsRef, loaded by every model so that all
# read the same refined keypoints).
#   usage: docs/scripts/evaluate_compact.sh RUNS_DIR TEST_ROOT OUT_ROOT [extra evaluate args]
# RESULTS.md's figures used: --resolution 32 --upsampling-steps 2 --metric-points 30000
set -euo pipefail
RUNS="${1:-runs}"; TESTS="${2:-data}"; OUT="${3:-runs/eval}"; shift 3 || true
IM2HANDS="${IM2HANDS:-im2hands}"
export OMP_WAIT_POLICY=PASSIVE
for seed in 101 102 103; do
    for kp in gt noisy; do
        models=(halo init full)
        # optional: the HALO trained on for InitOcc's steps without the image (docs/RESULTS.md)
        [ -f "$RUNS/halo_long/best.pt" ] && models+=(halo-long)
        for model in "${models[@]}"; do
            out="$OUT/${model}_${kp}_s${seed}"
            [ -f "$out/evaluation.json" ] && continue
            case "$model" in
                halo) ckpt=("$RUNS/halo/best.pt"); stages=(initial) ;;
                halo-long) ckpt=("$RUNS/halo_long/best.pt"); stages=(initial) ;;
                init) ckpt=("$RUNS/init/best.pt"); stages=(initial) ;;
                full) ckpt=("$RUNS/ref/best.pt"); stages=(refined) ;;
            esac
            [ "$kp" = noisy ] && ckpt+=("$RUNS/kpts/best.pt")
            $IM2HANDS evaluate --checkpoint "${ckpt[@]}" --data "$TESTS/test_s$seed" --split test --keypoints "$kp" \
                --stages "${stages[@]}" --workers 2 --threads 1 --no-progress --out "$out" "$@"
        done
    done
done
python "$(dirname "$0")/results_tables.py" "$OUT"
