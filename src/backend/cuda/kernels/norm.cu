// Batch normalisation over [N, C, HW] (per channel) and layer normalisation over the last
// dimension. Statistics are two-pass (mean, then centred variance) for accuracy.

// Training statistics: one block per channel. Updates the running estimates in place with
// PyTorch's rule (unbiased variance in the running estimate, biased in the normalisation).
extern "C" __global__ void bn_train_stats(const float* x, float* mean, float* invstd,
                                          float* running_mean, float* running_var, u64 n, u64 c,
                                          u64 hw, float momentum, float eps) {
    u64 m = n * hw;
    for (u64 ch = blockIdx.x; ch < c; ch += gridDim.x) {
        float s = 0.0f;
        for (u64 k = threadIdx.x; k < m; k += blockDim.x) s += x[((k / hw) * c + ch) * hw + k % hw];
        float mu = block_sum(s) / (float)m;
        float q = 0.0f;
        for (u64 k = threadIdx.x; k < m; k += blockDim.x) {
            float d = x[((k / hw) * c + ch) * hw + k % hw] - mu;
            q += d * d;
        }
        float var = block_sum(q) / (float)m;
        if (threadIdx.x == 0) {
            mean[ch] = mu;
            invstd[ch] = rsqrtf(var + eps);
            float unbiased = m > 1 ? var * (float)m / (float)(m - 1) : var;
            running_mean[ch] = (1.0f - momentum) * running_mean[ch] + momentum * mu;
            running_var[ch] = (1.0f - momentum) * running_var[ch] + momentum * unbiased;
        }
    }
}
extern "C" __global__ void bn_eval_stats(const float* running_mean, const float* running_var,
                                         float* mean, float* invstd, u64 c, float eps) {
    GRID_STRIDE(ch, c) {
        mean[ch] = running_mean[ch];
        invstd[ch] = rsqrtf(running_var[ch] + eps);
    }
}
extern "C" __global__ void bn_apply(const float* x, const float* mean, const float* invstd,
                                    const float* w, const float* b, float* y, u64 n, u64 c, u64 hw) {
    GRID_STRIDE(i, n * c * hw) {
        u64 ch = (i / hw) % c;
        y[i] = (x[i] - mean[ch]) * invstd[ch] * w[ch] + b[ch];
    }
}
// Per-channel sums of g and g * xhat (the weight and bias gradients): one block per channel.
extern "C" __global__ void bn_bwd_reduce(const float* x, const float* gy, const float* mean,
                                         const float* invstd, float* gw, float* gb, u64 n, u64 c,
                                         u64 hw) {
    u64 m = n * hw;
    for (u64 ch = blockIdx.x; ch < c; ch += gridDim.x) {
        float sg = 0.0f, sgx = 0.0f;
        for (u64 k = threadIdx.x; k < m; k += blockDim.x) {
            u64 idx = ((k / hw) * c + ch) * hw + k % hw;
            float g = gy[idx];
            sg += g;
            sgx += g * (x[idx] - mean[ch]) * invstd[ch];
        }
        sg = block_sum(sg);
        sgx = block_sum(sgx);
        if (threadIdx.x == 0) {
            gb[ch] = sg;
            gw[ch] = sgx;
        }
    }
}
// In training mode the batch statistics depend on x, which adds the two mean terms; in
// evaluation mode they are constants.
extern "C" __global__ void bn_bwd_dx(const float* x, const float* gy, const float* mean,
                                     const float* invstd, const float* w, const float* gw,
                                     const float* gb, float* gx, u64 n, u64 c, u64 hw, int train) {
    float m = (float)(n * hw);
    GRID_STRIDE(i, n * c * hw) {
        u64 ch = (i / hw) % c;
        float k = w[ch] * invstd[ch];
        if (train) {
            float xhat = (x[i] - mean[ch]) * invstd[ch];
            gx[i] = k * (gy[i] - gb[ch] / m - xhat * gw[ch] / m);
        } else {
            gx[i] = k * gy[i];
        }
    }
}

// Layer norm over rows of length d: one block per row.
extern "C" __global__ void layernorm_fwd(const float* x, const float* w, const float* b, float* y,
                                         float* mean, float* invstd, u64 rows, u64 d, float eps) {
    for (u64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + r * d;
        float s = 0.0f;
        for (u64 j = threadIdx.x; j < d; j += blockDim.x) s += xr[j];
        float mu = block_sum(s) / (float)d;
        float q = 0.0f;
        for (u64 j = threadIdx.x; j < d; j += blockDim.x) {
            float e = xr[j] - mu;
            q += e * e;
        }
        float is = rsqrtf(block_sum(q) / (float)d + eps);
        for (u64 j = threadIdx.x; j < d; j += blockDim.x) y[r * d + j] = (xr[j] - mu) * is * w[j] + b[j];
        if (threadIdx.x == 0) {
            mean[r] = mu;
            invstd[r] = is;
        }
    }
}
extern "C" __global__ void layernorm_bwd_dx(const float* x, const float* gy, const float* w,
                                            const float* mean, const float* invstd, float* gx,
                                            u64 rows, u64 d) {
    for (u64 r = blockIdx.x; r < rows; r += gridDim.x) {
        float mu = mean[r], is = invstd[r];
        float a = 0.0f, bsum = 0.0f;
        for (u64 j = threadIdx.x; j < d; j += blockDim.x) {
            float gw = gy[r * d + j] * w[j];
            a += gw;
            bsum += gw * (x[r * d + j] - mu) * is;
        }
        a = block_sum(a) / (float)d;
        bsum = block_sum(bsum) / (float)d;
        for (u64 j = threadIdx.x; j < d; j += blockDim.x) {
            float xhat = (x[r * d + j] - mu) * is;
            gx[r * d + j] = is * (gy[r * d + j] * w[j] - a - xhat * bsum);
        }
    }
}
// Column sums over rows (deterministic): gw[j] = sum g * xhat, gb[j] = sum g.
extern "C" __global__ void layernorm_bwd_params(const float* x, const float* gy, const float* mean,
                                                const float* invstd, float* gw, float* gb,
                                                u64 rows, u64 d) {
    GRID_STRIDE(j, d) {
        float sw = 0.0f, sb = 0.0f;
        for (u64 r = 0; r < rows; ++r) {
            float g = gy[r * d + j];
            sb += g;
            sw += g * (x[r * d + j] - mean[r]) * invstd[r];
        }
        gw[j] = sw;
        gb[j] = sb;
    }
}
