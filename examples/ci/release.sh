#!/usr/bin/env bash
# The steps both CI examples run (GitHub Actions and Jenkins call this same script):
#   release.sh train   MODEL           train, export, write metrics and data splits
#   release.sh commit  MODEL           record the build as a new version (metrics, data)
#   release.sh gate    MODEL CHANNEL   run CHANNEL's gates on that exact version
#   release.sh promote MODEL CHANNEL   move CHANNEL to it (refused unless the gates passed)
# MODEL is digits (scikit-learn MLP -> ONNX) or tiny-bert (transformers, safetensors).
# Environment: MODELVC_REGISTRY (the registry), MODELVC_AUTHOR (the CI identity, e.g.
# ci-bot), BUILD_DIR (default build), CI_REVISION (recorded in messages and reasons),
# TRAIN_ARGS (extra flags for the training script, e.g. --epochs 5).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
step="${1:?usage: release.sh train|commit|gate|promote MODEL [CHANNEL]}"
model="${2:?model name (digits or tiny-bert)}"
channel="${3:-}"
build="${BUILD_DIR:-build}/$model"
rev="${CI_REVISION:-$(git rev-parse --short HEAD 2>/dev/null || echo local)}"

case "$model" in
  digits)    train="$here/train_digits.py";    eval_data="$build/data/digits_test.npz" ;;
  tiny-bert) train="$here/train_tiny_bert.py"; eval_data="$build/data/test_ids.npy" ;;
  *) echo "unknown model $model" >&2; exit 2 ;;
esac

case "$step" in
  train)
    rm -rf "$build"
    # shellcheck disable=SC2086  # TRAIN_ARGS: extra training flags, word-split on purpose
    python "$train" "$build/model" "$build/data" "$build/metrics.json" ${TRAIN_ARGS:-}
    ;;
  commit)
    # Metrics from training become --metric K=V (they are what metric gates read).
    mapfile -t metric_args < <(python -c 'import json,sys
for k, v in json.load(open(sys.argv[1])).items(): print(f"--metric={k}={v}")' "$build/metrics.json")
    modelvc commit "$build/model" --model "$model" -m "CI build of $rev" \
      "${metric_args[@]}" --data "$build/data" --json \
      | python -c 'import json,sys; print(json.load(sys.stdin)["id"])' > "$build/version"
    echo "committed $model@$(cut -c1-12 "$build/version")"
    ;;
  gate)
    modelvc gate run "$model@$(cat "$build/version")" --channel "${channel:?channel}" \
      --data "$eval_data"
    ;;
  promote)
    modelvc promote "$model@$(cat "$build/version")" --to "${channel:?channel}" \
      -r "CI $rev passed the $channel gates"
    ;;
  *) echo "unknown step $step" >&2; exit 2 ;;
esac
