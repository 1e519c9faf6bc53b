// 2-D pooling over NCHW, PyTorch semantics (floor mode; max pooling pads with -inf; average
// pooling divides by the window clipped to the padded input when count_include_pad, else by
// the number of real pixels).
//
// Coordinates (ih, iw, and the padded extents) fit an int (checked by the launcher); offsets
// into a plane (ih * w + iw) and into the tensor are 64-bit, since one plane may hold more
// than 2^31 pixels.

struct PoolGeom {
    int n, c, h, w;
    int kh, kw, sh, sw, ph, pw;
    int ho, wo;
};

extern "C" __global__ void maxpool2d_fwd(const float* x, float* y, PoolGeom g) {
    GRID_STRIDE(i, (u64)g.n * g.c * g.ho * g.wo) {
        int ow = i % g.wo, oh = (i / g.wo) % g.ho;
        u64 plane = i / ((u64)g.wo * g.ho);
        const float* src = x + plane * (u64)g.h * g.w;
        float m = -INFINITY;
        for (int kh = 0; kh < g.kh; ++kh) {
            int ih = oh * g.sh - g.ph + kh;
            if (ih < 0 || ih >= g.h) continue;
            for (int kw = 0; kw < g.kw; ++kw) {
                int iw = ow * g.sw - g.pw + kw;
                if (iw < 0 || iw >= g.w) continue;
                float v = src[(u64)ih * g.w + iw];
                if (v > m || v != v) m = v;
            }
        }
        y[i] = m;
    }
}

// Recomputes each window's argmax (the first maximum, as PyTorch picks) instead of storing
// indices; windows overlap when stride < kernel, hence the atomics. gx must be zeroed.
extern "C" __global__ void maxpool2d_bwd(const float* x, const float* gy, float* gx, PoolGeom g) {
    GRID_STRIDE(i, (u64)g.n * g.c * g.ho * g.wo) {
        int ow = i % g.wo, oh = (i / g.wo) % g.ho;
        u64 plane = i / ((u64)g.wo * g.ho);
        const float* src = x + plane * (u64)g.h * g.w;
        float m = -INFINITY;
        long long best = -1;
        for (int kh = 0; kh < g.kh; ++kh) {
            int ih = oh * g.sh - g.ph + kh;
            if (ih < 0 || ih >= g.h) continue;
            for (int kw = 0; kw < g.kw; ++kw) {
                int iw = ow * g.sw - g.pw + kw;
                if (iw < 0 || iw >= g.w) continue;
                float v = src[(u64)ih * g.w + iw];
                if (best < 0 || v > m || v != v) {
                    m = v;
                    best = (long long)ih * g.w + iw;
                }
            }
        }
        if (best >= 0) atomicAdd(gx + plane * (u64)g.h * g.w + (u64)best, gy[i]);
    }
}

__device__ __forceinline__ float avg_divisor(const PoolGeom& g, int oh, int ow, int include_pad) {
    int hs = oh * g.sh - g.ph, ws = ow * g.sw - g.pw;
    int he = min(hs + g.kh, g.h + g.ph), we = min(ws + g.kw, g.w + g.pw);
    // Products in float: a window's area may exceed an int.
    float padded = (float)(he - hs) * (float)(we - ws);
    hs = max(hs, 0);
    ws = max(ws, 0);
    he = min(he, g.h);
    we = min(we, g.w);
    return include_pad ? padded : (float)(he - hs) * (float)(we - ws);
}

extern "C" __global__ void avgpool2d_fwd(const float* x, float* y, PoolGeom g, int include_pad) {
    GRID_STRIDE(i, (u64)g.n * g.c * g.ho * g.wo) {
        int ow = i % g.wo, oh = (i / g.wo) % g.ho;
        u64 plane = i / ((u64)g.wo * g.ho);
        const float* src = x + plane * (u64)g.h * g.w;
        float s = 0.0f;
        for (int kh = 0; kh < g.kh; ++kh) {
            int ih = oh * g.sh - g.ph + kh;
            if (ih < 0 || ih >= g.h) continue;
            for (int kw = 0; kw < g.kw; ++kw) {
                int iw = ow * g.sw - g.pw + kw;
                if (iw < 0 || iw >= g.w) continue;
                s += src[(u64)ih * g.w + iw];
            }
        }
        y[i] = s / avg_divisor(g, oh, ow, include_pad);
    }
}

// gx must be zeroed (overlapping windows).
extern "C" __global__ void avgpool2d_bwd(const float* gy, float* gx, PoolGeom g, int include_pad) {
    GRID_STRIDE(i, (u64)g.n * g.c * g.ho * g.wo) {
        int ow = i % g.wo, oh = (i / g.wo) % g.ho;
        u64 plane = i / ((u64)g.wo * g.ho);
        float v = gy[i] / avg_divisor(g, oh, ow, include_pad);
        for (int kh = 0; kh < g.kh; ++kh) {
            int ih = oh * g.sh - g.ph + kh;
            if (ih < 0 || ih >= g.h) continue;
            for (int kw = 0; kw < g.kw; ++kw) {
                int iw = ow * g.sw - g.pw + kw;
                if (iw < 0 || iw >= g.w) continue;
                atomicAdd(gx + plane * (u64)g.h * g.w + (u64)ih * g.w + iw, v);
            }
        }
    }
}
