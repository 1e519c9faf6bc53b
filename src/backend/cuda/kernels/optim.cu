// Fused optimizer updates, one pass over each parameter (PyTorch's formulas, as the CPU path).

extern "C" __global__ void sgd_plain(float* p, const float* g, u64 n, float lr, float wd) {
    GRID_STRIDE(i, n) p[i] -= lr * (g[i] + wd * p[i]);
}
extern "C" __global__ void sgd_momentum(float* p, const float* g, float* buf, u64 n, float lr,
                                        float momentum, float dampening, float wd, int nesterov,
                                        int first) {
    GRID_STRIDE(i, n) {
        float d = g[i] + wd * p[i];
        float b = first ? d : momentum * buf[i] + (1.0f - dampening) * d;
        buf[i] = b;
        p[i] -= lr * (nesterov ? d + momentum * b : b);
    }
}
// l2_wd: Adam's coupled decay (added to the gradient); decoupled_wd: AdamW's shrink.
extern "C" __global__ void adam_step(float* p, const float* g, float* m, float* v, u64 n, float lr,
                                     float beta1, float beta2, float eps, float l2_wd,
                                     float decoupled_wd, float bc1, float bc2_sqrt) {
    float step = lr / bc1;
    float shrink = 1.0f - lr * decoupled_wd;
    GRID_STRIDE(i, n) {
        float grad = g[i] + l2_wd * p[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * grad;
        float vi = beta2 * v[i] + (1.0f - beta2) * grad * grad;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * shrink - step * mi / (sqrtf(vi) / bc2_sqrt + eps);
    }
}
