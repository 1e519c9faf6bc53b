// conv2d as im2col + one cuBLAS GEMM per group. The batch is folded into the GEMM's columns
// (cols is [C*KH*KW, N*HO*WO]), so each layer is a single large product even where the
// spatial size is tiny (4x4 in ResNet-18's last stage), which a per-sample batched GEMM
// would run at a fraction of the GPU's throughput.

struct ConvGeom {
    int n, c, h, w;      // input
    int kh, kw;          // kernel
    int sh, sw, ph, pw, dh, dw;
    int ho, wo;          // output
};

extern "C" __global__ void im2col(const float* x, float* cols, ConvGeom g) {
    u64 hw = (u64)g.ho * g.wo;
    u64 ncols = (u64)g.n * hw;
    u64 total = (u64)g.c * g.kh * g.kw * ncols;
    GRID_STRIDE(i, total) {
        u64 col = i % ncols, row = i / ncols;
        int kw = row % g.kw;
        int kh = (row / g.kw) % g.kh;
        int c = row / ((u64)g.kw * g.kh);
        int b = col / hw;
        u64 p = col % hw;  // a plane of outputs may hold more than 2^31
        int oh = p / g.wo, ow = p % g.wo;
        int ih = oh * g.sh - g.ph + kh * g.dh;
        int iw = ow * g.sw - g.pw + kw * g.dw;
        float v = 0.0f;
        if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w)
            v = x[(((u64)b * g.c + c) * g.h + ih) * g.w + iw];
        cols[i] = v;
    }
}

// Gather form of col2im: each input pixel sums the columns that read it (no atomics, so the
// result is deterministic).
extern "C" __global__ void col2im(const float* cols, float* gx, ConvGeom g) {
    u64 hw = (u64)g.ho * g.wo;
    u64 ncols = (u64)g.n * hw;
    u64 total = (u64)g.n * g.c * g.h * g.w;
    GRID_STRIDE(i, total) {
        int iw = i % g.w;
        int ih = (i / g.w) % g.h;
        int c = (i / ((u64)g.w * g.h)) % g.c;
        int b = i / ((u64)g.w * g.h * g.c);
        float s = 0.0f;
        for (int kh = 0; kh < g.kh; ++kh) {
            int th = ih + g.ph - kh * g.dh;
            if (th < 0 || th % g.sh != 0) continue;
            int oh = th / g.sh;
            if (oh >= g.ho) continue;
            for (int kw = 0; kw < g.kw; ++kw) {
                int tw = iw + g.pw - kw * g.dw;
                if (tw < 0 || tw % g.sw != 0) continue;
                int ow = tw / g.sw;
                if (ow >= g.wo) continue;
                u64 row = ((u64)c * g.kh + kh) * g.kw + kw;
                s += cols[row * ncols + (u64)b * hw + (u64)oh * g.wo + ow];
            }
        }
        gx[i] = s;
    }
}

// [C, N*HW] -> [N, C, HW], adding a per-channel bias when has_bias is set.
extern "C" __global__ void cnhw_to_nchw(const float* src, const float* bias, float* dst, u64 n,
                                        u64 c, u64 hw, int has_bias) {
    GRID_STRIDE(i, n * c * hw) {
        u64 p = i % hw, ch = (i / hw) % c, b = i / (hw * c);
        float v = src[ch * n * hw + b * hw + p];
        dst[i] = has_bias ? v + bias[ch] : v;
    }
}
// [N, C, HW] -> [C, N*HW]
extern "C" __global__ void nchw_to_cnhw(const float* src, float* dst, u64 n, u64 c, u64 hw) {
    GRID_STRIDE(i, n * c * hw) {
        u64 p = i % hw, b = (i / hw) % n, ch = i / (hw * n);
        dst[i] = src[(b * c + ch) * hw + p];
    }
}

// Per-channel sum of g [N, C, HW] (conv bias gradient): one block per channel.
extern "C" __global__ void channel_sum(const float* g, float* out, u64 n, u64 c, u64 hw) {
    for (u64 ch = blockIdx.x; ch < c; ch += gridDim.x) {
        float s = 0.0f;
        for (u64 k = threadIdx.x; k < n * hw; k += blockDim.x) {
            u64 b = k / hw, p = k % hw;
            s += g[(b * c + ch) * hw + p];
        }
        s = block_sum(s);
        if (threadIdx.x == 0) out[ch] = s;
    }
}
