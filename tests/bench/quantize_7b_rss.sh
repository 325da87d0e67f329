#!/usr/bin/env bash
# Peak memory while quantizing a synthetic LLaMA-7B-shaped checkpoint (docs/DESIGN.md "Targets": below
# 3 GB plus calibration activations). A benchmark: it prints numbers and a verdict, and never fails
# on them; it is not part of ctest.
#
# Usage:
#   tests/bench/quantize_7b_rss.sh [QUANTLENS_CLI]
# QUANTLENS_CLI defaults to build/app/quantlens-cli. Settings come from the environment:
#   LAYERS=8        blocks in the synthetic checkpoint (32 is the full 7B; ~0.4 GB of F16 each)
#   PRESET=7b       synth preset; `PRESET=tiny LAYERS=2` checks the script itself in seconds
#   THREADS=2       quantlens-cli --threads
#   METHOD=gptq     rtn | gptq | spqr
#   NSAMPLES=4      calibration sequences
#   SEQLEN=128      tokens per calibration sequence
#   OUT_DTYPE=F32   dtype of the written dense checkpoint (quantize's --dtype)
#   SEED=1          seed of the checkpoint and of the calibration ids
#   WORKDIR=…       where the checkpoint, calibration file and output go (default: a new temp dir,
#                   removed at the end unless KEEP=1)
#   TIMEOUT=3600    seconds before the quantize run is stopped
#   SAMPLE_S=1      seconds between /proc samples of the process's anonymous and file-backed RSS
# Besides GNU time's peak RSS (which counts touched pages of the memory-mapped input checkpoint as
# well as the heap) it reports the peaks of RssAnon and RssFile separately, and keeps the sampled
# timeline in $WORKDIR/rss.tsv (seconds, RssAnon KiB, RssFile KiB, bytes of output written).
set -euo pipefail

cli=${1:-build/app/quantlens-cli}
layers=${LAYERS:-8}
threads=${THREADS:-2}
method=${METHOD:-gptq}
nsamples=${NSAMPLES:-4}
seqlen=${SEQLEN:-128}
out_dtype=${OUT_DTYPE:-F32}
seed=${SEED:-1}
timeout_s=${TIMEOUT:-3600}
sample_s=${SAMPLE_S:-1}
preset=${PRESET:-7b}
case $preset in # the presets' hidden size, vocabulary and parameters per block
7b) hidden=4096 vocab=32000 block_params=202383360 ;;
tiny) hidden=256 vocab=512 block_params=791040 ;;
*) echo "quantize_7b_rss: PRESET is 7b or tiny" >&2; exit 2 ;;
esac

[[ -x $cli ]] || { echo "quantize_7b_rss: no executable at $cli (pass the quantlens-cli path)" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "quantize_7b_rss: needs GNU time at /usr/bin/time" >&2; exit 2; }
cli=$(realpath "$cli")

gb() { awk -v bytes="$1" -v digits="${2:-2}" 'BEGIN { printf "%.*f", digits, bytes / 1e9 }'; }
now() { date +%s.%N; }

if [[ -n ${WORKDIR:-} ]]; then
    work=$WORKDIR
    mkdir -p "$work"
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/quantlens-rss.XXXXXX")
    [[ ${KEEP:-0} == 1 ]] || trap 'rm -rf "$work"' EXIT
fi
model=$work/model
out=$work/quantized

# Disk: the F16 input (embedding + lm_head + ~202M parameters per block, 2 bytes each) plus the
# output in OUT_DTYPE, with 10% to spare.
params=$((2 * vocab * hidden + layers * block_params))
out_bytes=$([[ $out_dtype == F32 ]] && echo 4 || echo 2)
need=$((params * (2 + out_bytes) * 11 / 10))
free=$(($(df --output=avail -B1 "$work" | tail -1)))
echo "disk: need $(gb "$need" 1) GB, $(gb "$free" 1) GB free in $work"
if ((free < need)); then
    echo "quantize_7b_rss: not enough free disk in $work" >&2
    exit 2
fi

if [[ ! -f $model/model.safetensors ]]; then
    "$cli" --threads "$threads" synth --preset "$preset" --layers "$layers" --seed "$seed" --out "$model"
fi

# Calibration ids: a flat little-endian uint16 array, seeded.
calib=$work/calib.u16
python3 - "$calib" "$seed" "$((nsamples * seqlen))" "$vocab" <<'EOF'
import random, struct, sys
path, seed, count, vocab = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
ids = [1] + [rng.randrange(3, vocab) for _ in range(count - 1)]  # BOS, then random ids
with open(path, "wb") as f:
    f.write(struct.pack("<%dH" % len(ids), *ids))
EOF

rm -rf "$out"
timing=$work/time.txt
timeline=$work/rss.tsv
log=$work/quantize.log
echo "running: quantlens-cli --threads $threads quantize model --method $method --calib calib.u16" \
    "--nsamples $nsamples --seqlen $seqlen --dtype $out_dtype --out quantized"
start=$(now)
timeout "$timeout_s" /usr/bin/time -v -o "$timing" \
    "$cli" --threads "$threads" quantize "$model" --method "$method" --calib "$calib" \
    --nsamples "$nsamples" --seqlen "$seqlen" --dtype "$out_dtype" --out "$out" >"$log" 2>&1 &
runner=$!

# Sample the quantize process (GNU time's child) until it exits.
printf 'seconds\trss_anon_kib\trss_file_kib\toutput_bytes\n' >"$timeline"
pid=""
peak_anon=0 peak_file=0
while kill -0 "$runner" 2>/dev/null; do
    # timeout → time → quantlens-cli
    [[ -n $pid ]] || pid=$(pgrep -P "$(pgrep -P "$runner" | head -1)" 2>/dev/null | head -1 || true)
    if [[ -n $pid && -r /proc/$pid/status ]]; then
        anon=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        file=$(awk '/^RssFile:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        written=$(stat -c %s "$out"/.model.safetensors.tmp.* "$out/model.safetensors" 2>/dev/null |
            head -1 || true)
        if [[ -n $anon && -n $file ]]; then
            printf '%s\t%s\t%s\t%s\n' "$(awk -v a="$(now)" -v b="$start" 'BEGIN { printf "%.1f", a - b }')" \
                "$anon" "$file" "${written:-0}" >>"$timeline"
            ((anon > peak_anon)) && peak_anon=$anon
            ((file > peak_file)) && peak_file=$file
        fi
    fi
    sleep "$sample_s"
done
status=0
wait "$runner" || status=$?
wall=$(awk -v a="$(now)" -v b="$start" 'BEGIN { printf "%.1f", a - b }')

tail -n 8 "$log"
if ((status != 0)); then
    echo "quantize_7b_rss: quantize exited with status $status (124: timed out after ${timeout_s}s)" >&2
fi
peak_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$timing")
activations=$((nsamples * seqlen * hidden * 4))
bound=$((3000000000 + activations))
echo
printf '%-34s %s\n' "checkpoint" "synthetic $preset, $layers layers, F16, seed $seed"
printf '%-34s %s\n' "method" "$method, $nsamples x $seqlen calibration tokens, $threads threads"
printf '%-34s %s s\n' "wall time" "$wall"
printf '%-34s %s GB\n' "peak RSS (GNU time)" "$(gb $((peak_kib * 1024)))"
printf '%-34s %s GB\n' "  sampled peak RssAnon (heap)" "$(gb $((peak_anon * 1024)))"
printf '%-34s %s GB\n' "  sampled peak RssFile (mmap)" "$(gb $((peak_file * 1024)))"
printf '%-34s %s GB\n' "calibration activations" "$(gb "$activations" 3)"
printf '%-34s %s GB (3 GB + activations)\n' "target" "$(gb "$bound")"
if ((peak_kib * 1024 <= bound)); then
    echo "verdict: within the target"
else
    echo "verdict: $(awk -v p="$((peak_kib * 1024))" -v b="$bound" 'BEGIN { printf "%.2f", p / b }')x the target"
fi
echo "timeline: $timeline"
exit "$status"
