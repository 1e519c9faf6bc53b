// Inverted dropout with a stateless mask: element i is kept when a hash of (seed, i) is at
// least p, so forward and backward (same kernel) agree without storing a mask, and the same
// seed gives the same mask on any device. Must match `dropout_uniform` in cuda/mod.rs.

__device__ __forceinline__ float dropout_uniform(u64 seed, u64 i) {
    u64 z = seed + (i + 1ull) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z = z ^ (z >> 31);
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

extern "C" __global__ void dropout_apply(const float* x, float* y, float p, u64 seed, u64 n) {
    float scale = 1.0f / (1.0f - p);
    GRID_STRIDE(i, n) y[i] = dropout_uniform(seed, i) >= p ? x[i] * scale : 0.0f;
}
