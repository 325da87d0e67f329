#!/usr/bin/env bash
# The fidelity comparison of docs/FIDELITY.md: SpQR, GPTQ and SqueezeLLM on stories260K-hf under the
# protocol the authors' engines were run with (calibration = the TinyStories excerpt as one
# BOS-separated stream cut into 256-token windows; evaluation = the same excerpt, documents
# protocol, ctx 256; 3 bits, β1 = 32, β2 = 4, qq = 3, act-order, percdamp 1). A benchmark: it prints
# the sweep's CSV (ppl, paper and stored bits, outlier fraction, KL) and never fails on its numbers.
# SqueezeLLM runs twice: the default exact clustering and the paper's k-means++ + Lloyd recipe.
#
# Usage: tests/bench/fidelity.sh [QUANTLENS_CLI] [DATA_DIR] [OUT.csv]
set -euo pipefail
cli=${1:-build/app/quantlens-cli}
data=${2:-../shared/data}
out=${3:-$(mktemp --suffix=.csv)}
text=$data/text/tinystories-valid-excerpt.txt
spqr="wbits=3:groupsize=32:stats-groupsize=4:qq-bits=3:percdamp=1:act-order=true"
"$cli" --threads "${THREADS:-2}" --device cpu sweep "$data/stories260K-hf" \
    --calib "$text" --eval "$text" --seqlen 256 --ctx 256 --out "$out" \
    --grid "spqr:$spqr:outlier-threshold=inf,0.5,0.2 \
gptq:wbits=3:groupsize=32:percdamp=1:act-order=true \
squeezellm:wbits=3,4:sparse-percent=0.40:sensitive-percent=0.05:optimal-kmeans=true,false"
cat "$out"
