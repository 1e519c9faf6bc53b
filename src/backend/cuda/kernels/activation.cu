// Pointwise activations. Forward: (x, y, p, n). Backward: (s, g, out, p, n) where s is the
// input x for relu/gelu and the output y for tanh/sigmoid (their derivatives are cheapest
// in terms of y), matching the CPU backward rules.

#define INV_SQRT_2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f
#define SQRT_2_OVER_PI 0.79788456080286536f

extern "C" __global__ void relu_fwd(const float* x, float* y, float p, u64 n) {
    GRID_STRIDE(i, n) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}
// The gradient at exactly 0 is 0, as in PyTorch and the CPU path.
extern "C" __global__ void relu_bwd(const float* x, const float* g, float* out, float p, u64 n) {
    GRID_STRIDE(i, n) out[i] = x[i] > 0.0f ? g[i] : 0.0f;
}

extern "C" __global__ void gelu_erf_fwd(const float* x, float* y, float p, u64 n) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + erff(v * INV_SQRT_2));
    }
}
extern "C" __global__ void gelu_erf_bwd(const float* x, const float* g, float* out, float p, u64 n) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        float d = 0.5f * (1.0f + erff(v * INV_SQRT_2)) + v * INV_SQRT_2PI * expf(-0.5f * v * v);
        out[i] = g[i] * d;
    }
}

extern "C" __global__ void gelu_tanh_fwd(const float* x, float* y, float p, u64 n) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + tanhf(SQRT_2_OVER_PI * (v + 0.044715f * v * v * v)));
    }
}
extern "C" __global__ void gelu_tanh_bwd(const float* x, const float* g, float* out, float p, u64 n) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        float t = tanhf(SQRT_2_OVER_PI * (v + 0.044715f * v * v * v));
        float d = 0.5f * (1.0f + t)
                + 0.5f * v * (1.0f - t * t) * SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * v * v);
        out[i] = g[i] * d;
    }
}

extern "C" __global__ void tanh_fwd(const float* x, float* y, float p, u64 n) {
    GRID_STRIDE(i, n) y[i] = tanhf(x[i]);
}
extern "C" __global__ void tanh_bwd(const float* y, const float* g, float* out, float p, u64 n) {
    GRID_STRIDE(i, n) out[i] = g[i] * (1.0f - y[i] * y[i]);
}

// Split by sign so exp never overflows.
__device__ __forceinline__ float sigmoidf(float v) {
    if (v >= 0.0f) return 1.0f / (1.0f + expf(-v));
    float e = expf(v);
    return e / (1.0f + e);
}
extern "C" __global__ void sigmoid_fwd(const float* x, float* y, float p, u64 n) {
    GRID_STRIDE(i, n) y[i] = sigmoidf(x[i]);
}
extern "C" __global__ void sigmoid_bwd(const float* y, const float* g, float* out, float p, u64 n) {
    GRID_STRIDE(i, n) out[i] = g[i] * y[i] * (1.0f - y[i]);
}
