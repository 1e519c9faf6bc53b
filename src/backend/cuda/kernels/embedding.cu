// Embedding lookup (gather) and its gradient (scatter-add: repeated ids add up).

extern "C" __global__ void embedding_fwd(const float* weight, const u32* ids, float* y, u64 len,
                                         u64 dim) {
    GRID_STRIDE(i, len * dim) y[i] = weight[(u64)ids[i / dim] * dim + i % dim];
}
// gw must be zeroed.
extern "C" __global__ void embedding_bwd(const u32* ids, const float* gy, float* gw, u64 len,
                                         u64 dim) {
    GRID_STRIDE(i, len * dim) atomicAdd(gw + (u64)ids[i / dim] * dim + i % dim, gy[i]);
}
