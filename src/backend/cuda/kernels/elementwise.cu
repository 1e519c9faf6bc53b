// Binary ops with broadcasting, gradient reduction back to an operand's shape, and the
// small pointwise maps the tape needs. Unary maps share the signature (x, y, p, n).

extern "C" __global__ void add_same(const float* a, const float* b, float* y, u64 n) {
    GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}
extern "C" __global__ void mul_same(const float* a, const float* b, float* y, u64 n) {
    GRID_STRIDE(i, n) y[i] = a[i] * b[i];
}
// b repeats along the leading dims: y[r, j] = a[r, j] op b[j].
extern "C" __global__ void add_rowsuffix(const float* a, const float* b, float* y, u64 n, u64 w) {
    GRID_STRIDE(i, n) y[i] = a[i] + b[i % w];
}
extern "C" __global__ void mul_rowsuffix(const float* a, const float* b, float* y, u64 n, u64 w) {
    GRID_STRIDE(i, n) y[i] = a[i] * b[i % w];
}
extern "C" __global__ void add_general(const float* a, const float* b, float* y, u64 n, Dims d) {
    GRID_STRIDE(i, n) {
        u64 ia, ib;
        broadcast_offsets(d, i, &ia, &ib);
        y[i] = a[ia] + b[ib];
    }
}
extern "C" __global__ void mul_general(const float* a, const float* b, float* y, u64 n, Dims d) {
    GRID_STRIDE(i, n) {
        u64 ia, ib;
        broadcast_offsets(d, i, &ia, &ib);
        y[i] = a[ia] * b[ib];
    }
}

// Column sums of g [rows, w]: one thread per column, rows summed in order (deterministic).
extern "C" __global__ void sum_rows(const float* g, float* out, u64 rows, u64 w) {
    GRID_STRIDE(j, w) {
        float s = 0.0f;
        for (u64 r = 0; r < rows; ++r) s += g[r * w + j];
        out[j] = s;
    }
}
// General broadcast reduction: out (zeroed) gathers g through the right operand's strides.
extern "C" __global__ void reduce_general(const float* g, float* out, u64 n, Dims d) {
    GRID_STRIDE(i, n) {
        u64 ia, ib;
        broadcast_offsets(d, i, &ia, &ib);
        atomicAdd(out + ib, g[i]);
    }
}

extern "C" __global__ void add_assign(float* acc, const float* g, u64 n) {
    GRID_STRIDE(i, n) acc[i] += g[i];
}
extern "C" __global__ void repeat_rows(const float* b, float* y, u64 n, u64 w) {
    GRID_STRIDE(i, n) y[i] = b[i % w];
}
// y[i] = s * g[0]; reads the scalar on the device so no host round trip is needed.
extern "C" __global__ void broadcast_scalar(const float* g, float* y, float s, u64 n) {
    GRID_STRIDE(i, n) y[i] = s * g[0];
}

extern "C" __global__ void scale(const float* x, float* y, float p, u64 n) {
    GRID_STRIDE(i, n) y[i] = p * x[i];
}
extern "C" __global__ void add_scalar(const float* x, float* y, float p, u64 n) {
    GRID_STRIDE(i, n) y[i] = x[i] + p;
}
