#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan+UBSan) and runs each for SECONDS (default 60),
# seeded from ../shared/data. Findings (crash-*, leak-*, timeout-*, oom-*) land in
# build-fuzz/findings/<target>/; the last line per target is its executions and findings.
#   tests/fuzz/run_fuzzers.sh [SECONDS] [TARGET…]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
shift || true
data=${QUANTLENS_DATA_DIR:-../shared/data}
build=build-fuzz

CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DQUANTLENS_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQUANTLENS_DATA_DIR="$(realpath "$data")" >/dev/null
cmake --build "$build"

# Seeds: the real files each parser reads.
seed() { # target, files…
    local corpus="$build/corpus/$1"
    shift
    mkdir -p "$corpus"
    for f in "$@"; do cp "$f" "$corpus/"; done
}
seed fuzz_safetensors "$data/stories260K-hf/model.safetensors" \
    "$data/stories260K-hf-bf16/model.safetensors"
seed fuzz_hf_config "$data/stories260K-hf/config.json" "$data/stories260K-hf-bf16/config.json"
printf '{"metadata":{"total_size":1},"weight_map":{"model.embed_tokens.weight":"model-00001-of-00001.safetensors"}}' \
    >"$build/index-seed.json"
seed fuzz_sharded_index "$build/index-seed.json"
seed fuzz_llama2c_checkpoint "$data/stories260K/stories260K.bin"
seed fuzz_tokenizers "$data/stories260K/tok512.bin" "$data/stories260K/tok512.model"
seed fuzz_project_file tests/fuzz/seeds/session.quantlens
# quantlens checkpoints of stories260K, one per method, written by the regular build's CLI.
[ -x build/app/quantlens-cli ] || { cmake -S . -B build -G Ninja >/dev/null && cmake --build build --target quantlens-cli; }
for method in rtn gptq spqr squeezellm; do
    out="$build/checkpoints/$method"
    [ -f "$out/model.safetensors" ] || build/app/quantlens-cli quantize "$data/stories260K-hf" \
        --method "$method" --calib "$data/text/tinystories-valid-excerpt.txt" --nsamples 2 \
        --seqlen 64 --format quantlens --out "$out" >/dev/null
    mkdir -p "$build/corpus/fuzz_quantlens_checkpoint"
    cp "$out/model.safetensors" "$build/corpus/fuzz_quantlens_checkpoint/$method.safetensors"
done

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_safetensors fuzz_hf_config fuzz_sharded_index
    fuzz_llama2c_checkpoint fuzz_tokenizers fuzz_project_file fuzz_quantlens_checkpoint)
status=0
for target in "${targets[@]}"; do
    findings="$build/findings/$target"
    mkdir -p "$findings"
    log="$build/findings/$target.log"
    # -malloc_limit_mb: a header that claims 10^12 elements must fail, not allocate.
    # -timeout: a single input running 10 s is a hang.
    if ! "$build/tests/fuzz/$target" "$build/corpus/$target" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=512 -max_len=2097152 -print_final_stats=1 \
        -artifact_prefix="$findings/" >"$log" 2>&1; then
        status=1
    fi
    executions=$(grep -m1 "stat::number_of_executed_units" "$log" | awk "{print \$2}" || true)
    echo "$target: ${executions:-?} executions in ${seconds} s, $(ls "$findings" | wc -l) findings"
done
exit $status
