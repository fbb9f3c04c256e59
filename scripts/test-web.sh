#!/usr/bin/env bash
# The browser test: the demo page (web/dist, from scripts/build-web.sh) in headless Chromium on
# SmolLM2-135M, on the wasm CPU path and on WebGPU (Chromium's SwiftShader here): the greedy
# text must equal the native CPU's (`ember run --backend cpu --temp 0`; on WebGPU for the last
# prompt; on the CPU path once more with ?scalar=1, the portable kernels; and on Qwen2.5-Coder-0.5B
# Q4_K_M, the K-quant kernels, against `ember run --scalar`), and WebGPU's logits must agree with `ember logits --backend cpu` (see web_test.py). Installs Chromium (Debian's package) when missing; fetches the model
# (scripts/fetch-models.sh) when missing. Every page has a hard timeout (EMBER_WEB_TIMEOUT, s).
#   EMBER_WEB_SCREENSHOT=docs/web-chat.png  also runs a chat turn and keeps a screenshot
#   (on EMBER_WEB_SCREENSHOT_BACKEND: auto, cpu or webgpu).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-web-ci.sh
[ -f web/dist/index.html ] && [ -f web/dist/pkg/ember_web_bg.wasm ] || { echo "test-web: run scripts/build-web.sh first" >&2; exit 1; }
ember="${EMBER_BIN:-${CARGO_TARGET_DIR:-target}/release/ember}"
[ -x "$ember" ] || (unset RUSTC_WORKSPACE_WRAPPER; cargo build --release -q -p ember-cli)
model="${EMBER_HOME:-$HOME/.cache/ember}/models/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$model" ] || EMBER_BIN="$ember" scripts/fetch-models.sh smollm2-135m
# A Q4_K_M file for the K-quant SIMD128 kernels end to end (the CPU path only).
kquant="${EMBER_HOME:-$HOME/.cache/ember}/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
[ -f "$kquant" ] || EMBER_BIN="$ember" scripts/fetch-models.sh qwen2.5-coder-0.5b

# Whole-run cap on top of the per-page one: never hang CI.
exec timeout -k 10 "${EMBER_WEB_TOTAL_TIMEOUT:-600}" python3 scripts/web_test.py \
  --ember "$ember" --model "$model" --backends "${EMBER_WEB_BACKENDS:-cpu,webgpu}" --n 16 --timeout "${EMBER_WEB_TIMEOUT:-180}" --kquant-model "$kquant" \
  ${EMBER_WEB_SCREENSHOT:+--screenshot "$EMBER_WEB_SCREENSHOT" --screenshot-backend "${EMBER_WEB_SCREENSHOT_BACKEND:-auto}"} \
  "The capital of France is" "Once upon a time, a little robot"
