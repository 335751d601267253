#!/usr/bin/env bash
# docs/RESULTS.md's tables: HALO and the full model (whose initial stage is InitOcc) on three test splits
# (seeds 101-103, never used in training), with ground-truth and with noisy keypoints (+ KptsRef).
#   usage: docs/scripts/evaluate_compact.sh RUNS_DIR TEST_ROOT OUT_ROOT [extra evaluate args]
set -euo pipefail
RUNS="${1:-runs}"; TESTS="${2:-data}"; OUT="${3:-runs/eval}"; shift 3 || true
IM2HANDS="${IM2HANDS:-im2hands}"
export OMP_WAIT_POLICY=PASSIVE
for seed in 101 102 103; do
    for kp in gt noisy; do
        for model in halo full; do
            out="$OUT/${model}_${kp}_s${seed}"
            [ -f "$out/evaluation.json" ] && continue
            if [ "$model" = halo ]; then ckpt=("$RUNS/halo/best.pt"); else ckpt=("$RUNS/ref/best.pt" "$RUNS/kpts/best.pt"); fi
            # HALO with noisy keypoints reads the KptsRef-refined ones too: the same inputs for every method
            [ "$model" = halo ] && [ "$kp" = noisy ] && ckpt+=("$RUNS/kpts/best.pt")
            $IM2HANDS evaluate --checkpoint "${ckpt[@]}" --data "$TESTS/test_s$seed" --split test --keypoints "$kp" --stages $([ "$model" = halo ] && echo initial || echo initial refined) \
                --workers 2 --threads 1 --no-progress --out "$out" "$@"
        done
    done
done
python "$(dirname "$0")/results_tables.py" "$OUT"
