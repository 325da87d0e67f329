#include "transformer_kernels.h"

#include "cuda_check.h"

namespace quantlens::gpu {
namespace {

constexpr int kThreads = 256;

// The sum of `value` over the block (blockDim.x a multiple of 32, at most 1024), in every thread.
// `scratch` holds 32 floats.
__device__ float blockSum(float value, float* scratch) {
    for (int offset = 16; offset > 0; offset /= 2)
        value += __shfl_xor_sync(0xffffffffu, value, offset);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    __syncthreads(); // scratch may still be read from a previous call
    if (lane == 0) scratch[warp] = value;
    __syncthreads();
    value = lane < warps ? scratch[lane] : 0.0f;
    for (int offset = 16; offset > 0; offset /= 2)
        value += __shfl_xor_sync(0xffffffffu, value, offset);
    return value;
}

__device__ float blockMax(float value, float* scratch) {
    for (int offset = 16; offset > 0; offset /= 2)
        value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    __syncthreads();
    if (lane == 0) scratch[warp] = value;
    __syncthreads();
    value = lane < warps ? scratch[lane] : -INFINITY;
    for (int offset = 16; offset > 0; offset /= 2)
        value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
    return value;
}

__global__ void embedKernel(const float* table, const std::int32_t* ids, int width, float* out) {
    const float* row = table + static_cast<std::size_t>(ids[blockIdx.x]) * width;
    float* target = out + static_cast<std::size_t>(blockIdx.x) * width;
    for (int j = threadIdx.x; j < width; j += blockDim.x)
        target[j] = row[j];
}

__global__ void rmsNormKernel(const float* x, const float* weight, int width, float eps,
                              float* out) {
    __shared__ float scratch[32];
    const float* row = x + static_cast<std::size_t>(blockIdx.x) * width;
    float squares = 0.0f;
    for (int j = threadIdx.x; j < width; j += blockDim.x)
        squares += row[j] * row[j];
    const float inverse =
        1.0f / sqrtf(blockSum(squares, scratch) / static_cast<float>(width) + eps);
    float* target = out + static_cast<std::size_t>(blockIdx.x) * width;
    for (int j = threadIdx.x; j < width; j += blockDim.x)
        target[j] = row[j] * inverse * weight[j];
}

// One block per token; threads walk (head, pair).
__global__ void ropeKernel(float* x, int heads, int headDim, bool interleaved, const float* cosines,
                           const float* sines) {
    const int t = blockIdx.x, half = headDim / 2;
    float* row = x + static_cast<std::size_t>(t) * heads * headDim;
    for (int k = threadIdx.x; k < heads * half; k += blockDim.x) {
        const int h = k / half, i = k % half;
        const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        float* head = row + h * headDim;
        const float c = cosines[t * half + i], s = sines[t * half + i];
        const float u = head[a], v = head[b];
        head[a] = u * c - v * s;
        head[b] = v * c + u * s;
    }
}

__global__ void biasKernel(float* y, const float* bias, int width) {
    float* row = y + static_cast<std::size_t>(blockIdx.x) * width;
    for (int j = threadIdx.x; j < width; j += blockDim.x)
        row[j] += bias[j];
}

// One block per (query position, head): scores over the visible keys first…t in shared memory,
// softmax, then the weighted sum of values.
__global__ void attentionKernel(const float* queries, const float* keys, const float* values,
                                int heads, int kvHeads, int headDim, float scale, int window,
                                float* out) {
    extern __shared__ float shared[]; // query [headDim], then scores [t + 1 − first]
    __shared__ float scratch[32];
    const int t = blockIdx.x, head = blockIdx.y;
    const int first = window > 0 ? max(0, t - window + 1) : 0;
    const int kvHead = head / (heads / kvHeads);
    const int width = heads * headDim, kvWidth = kvHeads * headDim;
    float* query = shared;
    float* scores = shared + headDim;
    for (int d = threadIdx.x; d < headDim; d += blockDim.x)
        query[d] = queries[static_cast<std::size_t>(t) * width + head * headDim + d];
    __syncthreads();
    float localMax = -INFINITY;
    for (int j = first + threadIdx.x; j <= t; j += blockDim.x) {
        const float* key = keys + static_cast<std::size_t>(j) * kvWidth + kvHead * headDim;
        float dot = 0.0f;
        for (int d = 0; d < headDim; ++d)
            dot = fmaf(query[d], key[d], dot);
        scores[j - first] = dot * scale;
        localMax = fmaxf(localMax, scores[j - first]);
    }
    const float maximum = blockMax(localMax, scratch);
    float localSum = 0.0f;
    for (int j = first + threadIdx.x; j <= t; j += blockDim.x) {
        scores[j - first] = expf(scores[j - first] - maximum);
        localSum += scores[j - first];
    }
    const float inverseSum = 1.0f / blockSum(localSum, scratch); // also orders the score writes
    for (int d = threadIdx.x; d < headDim; d += blockDim.x) {
        float sum = 0.0f;
        for (int j = first; j <= t; ++j)
            sum = fmaf(scores[j - first] * inverseSum,
                       values[static_cast<std::size_t>(j) * kvWidth + kvHead * headDim + d], sum);
        out[static_cast<std::size_t>(t) * width + head * headDim + d] = sum;
    }
}

__global__ void swiGluKernel(float* gate, const float* up, std::int64_t count) {
    const std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
    if (i < count) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

} // namespace

void embedRows(const float* table, const std::int32_t* ids, int tokens, int width, float* out,
               cudaStream_t stream) {
    embedKernel<<<tokens, kThreads, 0, stream>>>(table, ids, width, out);
    checkCuda(cudaGetLastError(), "embedding launch");
}

void rmsNorm(const float* x, const float* weight, int tokens, int width, float eps, float* out,
             cudaStream_t stream) {
    rmsNormKernel<<<tokens, kThreads, 0, stream>>>(x, weight, width, eps, out);
    checkCuda(cudaGetLastError(), "RMSNorm launch");
}

void addBias(float* y, const float* bias, int tokens, int width, cudaStream_t stream) {
    biasKernel<<<tokens, kThreads, 0, stream>>>(y, bias, width);
    checkCuda(cudaGetLastError(), "bias launch");
}

void applyRope(float* x, int tokens, int heads, int headDim, bool interleaved, const float* cosines,
               const float* sines, cudaStream_t stream) {
    ropeKernel<<<tokens, kThreads, 0, stream>>>(x, heads, headDim, interleaved, cosines, sines);
    checkCuda(cudaGetLastError(), "RoPE launch");
}

int attentionTokenLimit(int device, int headDim) {
    int optIn = 0;
    checkCuda(cudaDeviceGetAttribute(&optIn, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
              "cudaDeviceGetAttribute");
    const int staticBytes = 32 * sizeof(float); // the reductions' scratch
    return (optIn - staticBytes) / static_cast<int>(sizeof(float)) - headDim;
}

void causalAttention(const float* queries, const float* keys, const float* values, int tokens,
                     int heads, int kvHeads, int headDim, float scale, int window, float* out,
                     cudaStream_t stream) {
    int device = 0;
    checkCuda(cudaGetDevice(&device), "cudaGetDevice");
    if (tokens > attentionTokenLimit(device, headDim))
        throw Error("cuda", "attention over " + std::to_string(tokens) +
                                " tokens needs more shared memory than a block has");
    const std::size_t shared = sizeof(float) * (static_cast<std::size_t>(headDim) + tokens);
    // Past 48 KiB a kernel must opt in to its dynamic shared memory.
    checkCuda(cudaFuncSetAttribute(attentionKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   static_cast<int>(shared)),
              "cudaFuncSetAttribute");
    attentionKernel<<<dim3(tokens, heads), kThreads / 2, shared, stream>>>(
        queries, keys, values, heads, kvHeads, headDim, scale, window, out);
    checkCuda(cudaGetLastError(), "attention launch");
}

void swiGlu(float* gate, const float* up, std::int64_t count, cudaStream_t stream) {
    if (count == 0) return;
    swiGluKernel<<<static_cast<unsigned>((count + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
        gate, up, count);
    checkCuda(cudaGetLastError(), "SwiGLU launch");
}

} // namespace quantlens::gpu
