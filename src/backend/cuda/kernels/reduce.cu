// Reductions. Full sums run in two deterministic passes (per-block partials, then one block),
// so results do not depend on scheduling.

extern "C" __global__ void sum_partial(const float* x, float* partial, u64 n) {
    float s = 0.0f;
    GRID_STRIDE(i, n) s += x[i];
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
extern "C" __global__ void sum_final(const float* partial, float* out, u64 m, float scale) {
    float s = 0.0f;
    for (u64 i = threadIdx.x; i < m; i += blockDim.x) s += partial[i];
    s = block_sum(s);
    if (threadIdx.x == 0) out[0] = s * scale;
}

// Mean over the middle axis of [outer, len, inner]; one thread per output element.
extern "C" __global__ void mean_axis_fwd(const float* x, float* y, u64 outer, u64 len, u64 inner) {
    GRID_STRIDE(i, outer * inner) {
        u64 o = i / inner, j = i % inner;
        const float* src = x + o * len * inner + j;
        float s = 0.0f;
        for (u64 t = 0; t < len; ++t) s += src[t * inner];
        y[i] = s / (float)len;
    }
}
extern "C" __global__ void mean_axis_bwd(const float* g, float* out, u64 outer, u64 len, u64 inner) {
    GRID_STRIDE(i, outer * len * inner) {
        u64 o = i / (len * inner), j = i % inner;
        out[i] = g[o * inner + j] / (float)len;
    }
}
