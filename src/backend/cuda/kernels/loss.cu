// Losses, per sample. Row kernels use one block per sample (grid-stride over rows).

// Fused softmax + cross-entropy: per-sample loss and the probabilities for the backward.
extern "C" __global__ void softmax_xent_fwd(const float* logits, const u32* labels, float* loss,
                                            float* probs, u64 n, u64 c) {
    for (u64 r = blockIdx.x; r < n; r += gridDim.x) {
        const float* x = logits + r * c;
        float* p = probs + r * c;
        float m = -INFINITY;
        for (u64 j = threadIdx.x; j < c; j += blockDim.x) m = fmaxf(m, x[j]);
        m = block_max(m);
        float s = 0.0f;
        for (u64 j = threadIdx.x; j < c; j += blockDim.x) {
            float e = expf(x[j] - m);
            p[j] = e;
            s += e;
        }
        s = block_sum(s);
        float inv = 1.0f / s;
        for (u64 j = threadIdx.x; j < c; j += blockDim.x) p[j] *= inv;
        if (threadIdx.x == 0) loss[r] = m + logf(s) - x[labels[r]];
    }
}
// d loss_r / d logits[r, j] = g[r] * (p[r, j] - [j == label_r]).
extern "C" __global__ void softmax_xent_bwd(const float* probs, const u32* labels, const float* g,
                                            float* out, u64 n, u64 c) {
    GRID_STRIDE(i, n * c) {
        u64 r = i / c, j = i % c;
        out[i] = g[r] * (probs[i] - (j == (u64)labels[r] ? 1.0f : 0.0f));
    }
}

extern "C" __global__ void mse_fwd(const float* p, const float* t, float* loss, u64 n, u64 d) {
    for (u64 r = blockIdx.x; r < n; r += gridDim.x) {
        float s = 0.0f;
        for (u64 j = threadIdx.x; j < d; j += blockDim.x) {
            float e = p[r * d + j] - t[r * d + j];
            s += e * e;
        }
        s = block_sum(s);
        if (threadIdx.x == 0) loss[r] = s / (float)d;
    }
}
extern "C" __global__ void mse_bwd(const float* p, const float* t, const float* g, float* gp,
                                   float* gt, u64 n, u64 d) {
    GRID_STRIDE(i, n * d) {
        float w = g[i / d] / (float)d;
        float v = w * 2.0f * (p[i] - t[i]);
        gp[i] = v;
        gt[i] = -v;
    }
}

// Overflow-free form max(x, 0) - x t + log(1 + e^{-|x|}).
extern "C" __global__ void bce_fwd(const float* x, const float* t, float* loss, u64 n, u64 d) {
    for (u64 r = blockIdx.x; r < n; r += gridDim.x) {
        float s = 0.0f;
        for (u64 j = threadIdx.x; j < d; j += blockDim.x) {
            float v = x[r * d + j];
            s += fmaxf(v, 0.0f) - v * t[r * d + j] + log1pf(expf(-fabsf(v)));
        }
        s = block_sum(s);
        if (threadIdx.x == 0) loss[r] = s / (float)d;
    }
}
extern "C" __global__ void bce_bwd(const float* x, const float* t, const float* g, float* gx,
                                   float* gt, u64 n, u64 d) {
    GRID_STRIDE(i, n * d) {
        float w = g[i / d] / (float)d;
        float v = x[i];
        float s;
        if (v >= 0.0f) {
            s = 1.0f / (1.0f + expf(-v));
        } else {
            float e = expf(v);
            s = e / (1.0f + e);
        }
        gx[i] = w * (s - t[i]);
        gt[i] = -w * v;
    }
}
