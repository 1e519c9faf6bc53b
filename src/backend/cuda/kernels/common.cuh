// Prepended to every kernel file before NVRTC compiles it (NVRTC has no standard headers).
typedef unsigned long long u64;
typedef unsigned int u32;

#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif

// Grid-stride loop: launches are capped in blocks, so every kernel must cover any n.
#define GRID_STRIDE(i, n) \
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (u64)(n); \
         i += (u64)blockDim.x * gridDim.x)

// Broadcast geometry of a binary op, passed by value (must match `Dims` in real.rs).
#define MAX_RANK 8
struct Dims {
    int rank;
    int out[MAX_RANK];
    int sa[MAX_RANK];  // strides of the left operand (0 where it is broadcast)
    int sb[MAX_RANK];  // strides of the right operand
};

__device__ __forceinline__ void broadcast_offsets(const Dims& d, u64 i, u64* ia, u64* ib) {
    u64 a = 0, b = 0;
    for (int k = d.rank - 1; k >= 0; --k) {
        u64 c = i % (u64)d.out[k];
        i /= (u64)d.out[k];
        a += c * (u64)d.sa[k];
        b += c * (u64)d.sb[k];
    }
    *ia = a;
    *ib = b;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block, returned to every thread. blockDim.x must be a multiple of 32. The
// leading barrier makes back-to-back calls safe (the shared slots are reused).
__device__ float block_sum(float v) {
    __shared__ float sh[32];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    int nw = blockDim.x >> 5;
    if (wid == 0) {
        v = lane < nw ? sh[lane] : 0.0f;
        v = warp_sum(v);
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    return sh[0];
}

__device__ float block_max(float v) {
    __shared__ float sh[32];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    int nw = blockDim.x >> 5;
    if (wid == 0) {
        v = lane < nw ? sh[lane] : -INFINITY;
        v = warp_max(v);
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    return sh[0];
}
