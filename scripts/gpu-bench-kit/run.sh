#!/usr/bin/env bash
# Ember's GPU benchmark kit, run on the machine with the GPU (no Rust, no network needed).
# Made by scripts/gpu-bench-kit.sh: bin/ember and bin/gen-bench-models are stripped release
# binaries built for x86_64 Linux. Steps:
#   1. `ember gpu-check` (adapters, device profile, self-test per tier) when the binary has it;
#   2. synthetic models written here by the project's own GGUF writer (seeded random weights:
#      a SmolLM2-135M shape in Q4_0 and Q8_0, and MiniCPM-2B in Q4_K unless QUICK=1);
#   3. parity: every layer's intermediates on the CPU vs the GPU (`ember logits --dump-layers`,
#      `ember compare-dumps --tol 0.05`: the activation rounding of quantized products flips a
#      step of 1/127 of a block's maximum where CPU and GPU sums differ in the last bit, which
#      random weights show as ~2e-2 relative; a wrong kernel shows as ~1), and the last
#      position's top-1 token the same on both;
#   4. `ember bench --backend wgpu` and `--backend cpu` per model (JSON kept in $OUT);
#   5. one table.
# Usage: run.sh [OUT_DIR]   env: QUICK=1 (small model only, short runs), BACKEND=wgpu,
#        REPS=3, N_PROMPT=512, N_GEN=128. Exit status: 1 when a parity check failed.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-${OUT:-$here/out}}"
mkdir -p "$out/models"
ember="$here/bin/ember"
gen="$here/bin/gen-bench-models"
backend="${BACKEND:-wgpu}"
reps="${REPS:-3}"; np="${N_PROMPT:-512}"; ng="${N_GEN:-128}"
models=(smollm2-q4_0 smollm2-q8_0 minicpm2b-q4_k)
if [ "${QUICK:-0}" = 1 ]; then models=(smollm2-q4_0); reps=1; np=64; ng=16; fi
log() { echo "== $*" >&2; }
# One numeric field of a one-line JSON object (empty when absent).
field() { grep -o "\"$1\":[-0-9.e+]*" "$2" 2>/dev/null | head -1 | cut -d: -f2; }

log "machine: $(uname -srm), $(nproc) cores"
if "$ember" gpu-check --help >/dev/null 2>&1; then
  log "gpu-check"
  "$ember" gpu-check | tee "$out/gpu-check.txt" >&2
  "$ember" gpu-check --json >"$out/gpu-check.json" 2>/dev/null || true
fi

log "generating ${models[*]} (seeded random weights)"
todo=()
for m in "${models[@]}"; do [ -f "$out/models/$m.gguf" ] || todo+=("$m"); done
[ ${#todo[@]} -eq 0 ] || "$gen" "$out/models" "${todo[@]}" || { echo "model generation failed" >&2; exit 2; }

status=0
ids="1,300,4000,1234,77,2222,9999,42,512,3000,17,8,600,31000,255,1000"
declare -A parity
for m in "${models[@]}"; do
  f="$out/models/$m.gguf"
  log "parity $m: cpu vs $backend"
  rm -rf "$out/dump-cpu-$m" "$out/dump-gpu-$m"
  "$ember" logits -m "$f" --backend cpu --ids "$ids" --last --top 1 --dump-layers "$out/dump-cpu-$m" >"$out/top1-cpu-$m.json" 2>"$out/logits-cpu-$m.log"
  if ! "$ember" logits -m "$f" --backend "$backend" --ids "$ids" --last --top 1 --dump-layers "$out/dump-gpu-$m" >"$out/top1-gpu-$m.json" 2>"$out/logits-gpu-$m.log"; then
    parity[$m]="FAIL (gpu run: $(tail -1 "$out/logits-gpu-$m.log"))"; status=1; continue
  fi
  if "$ember" compare-dumps --tol 0.05 "$out/dump-cpu-$m" "$out/dump-gpu-$m" >"$out/compare-$m.txt" 2>&1; then
    parity[$m]="ok"
  else
    parity[$m]="FAIL (see compare-$m.txt)"; status=1
  fi
  top1() { grep -o '"top":\[\[[0-9]*' "$1" | grep -o '[0-9]*$'; }
  a="$(top1 "$out/top1-cpu-$m.json")"; b="$(top1 "$out/top1-gpu-$m.json")"
  if [ -z "$a" ] || [ "$a" != "$b" ]; then
    parity[$m]="FAIL (top-1 cpu ${a:-?} vs gpu ${b:-?})"; status=1
  fi
  rm -rf "$out/dump-cpu-$m" "$out/dump-gpu-$m"
done

for m in "${models[@]}"; do
  f="$out/models/$m.gguf"
  for b in "$backend" cpu; do
    log "bench $m on $b (pp$np, tg$ng, $reps reps)"
    "$ember" -v bench -m "$f" --backend "$b" -p "$np" -n "$ng" -r "$reps" --json >"$out/bench-$b-$m.json" 2>"$out/bench-$b-$m.log" ||
      echo "bench failed: $(tail -1 "$out/bench-$b-$m.log")" >&2
  done
done

echo
echo "| model | parity | $backend pp$np t/s | $backend tg$ng t/s | cpu pp$np t/s | cpu tg$ng t/s | gpu weight MiB | gguf weight MiB | dispatches/token | load ms |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for m in "${models[@]}"; do
  g="$out/bench-$backend-$m.json"; c="$out/bench-cpu-$m.json"
  mib() { local v; v="$(field "$1" "$g")"; [ -n "$v" ] && awk -v b="$v" 'BEGIN{printf "%.1f", b/1048576}'; }
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$m" "${parity[$m]:-?}" \
    "$(field pp_tps "$g" | cut -c1-7)" "$(field tg_tps "$g" | cut -c1-7)" \
    "$(field pp_tps "$c" | cut -c1-7)" "$(field tg_tps "$c" | cut -c1-7)" \
    "$(mib gpu_weight_bytes)" "$(mib gguf_weight_bytes)" "$(field dispatches_per_token "$g")" "$(field load_ms "$g" | cut -d. -f1)"
done
echo
adapter="$(grep -ho 'wgpu: [^;]*' "$out"/bench-"$backend"-*.log 2>/dev/null | head -1)"
echo "adapter: ${adapter:-see gpu-check.txt}; JSON and logs in $out"
exit $status
