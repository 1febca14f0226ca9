// Channel scaling (Squeeze-and-Excitation's scale step): y[n, c, h, w] = x[n, c, h, w] * s[n, c].
//
// Thread-to-data mapping. x is (N, C, H, W) in C order, so the N*C "planes" (one image
// channel each) lie one after another, `pixels` = H*W values each; s is (N, C) in C order,
// so plane p = n*C + c has its weight at s[p].
//
// * channel_scale_forward and channel_scale_backward_x: one thread per element (a
//   grid-stride loop over all N*C*H*W values). Element i belongs to plane i / pixels.
// * channel_scale_backward_s: one BLOCK of 256 threads per plane (blockIdx.x is the
//   plane). Thread t adds up g * x over the plane's values t, t + 256, ... (neighbouring
//   threads read neighbouring addresses), then the block combines its 256 partial sums
//   by a tree in shared memory (256 -> 128 -> ... -> 1), and thread 0 writes grad_s[plane].
//   Every grad_s value is written by one block: no atomic operations.

// y = x * s[plane].
template <typename T>
__global__ void channel_scale_forward(const T* x, const T* s, T* y, int n, int pixels) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        y[i] = x[i] * s[i / pixels];
    }
}

// dL/dx = dL/dy * s[plane]: the same multiply as forward, applied to the gradient.
template <typename T>
__global__ void channel_scale_backward_x(const T* grad_y, const T* s, T* grad_x, int n, int pixels) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        grad_x[i] = grad_y[i] * s[i / pixels];
    }
}

// dL/ds[plane] = sum over the plane's pixels of dL/dy * x. Launched with 256 threads a
// block, one block per plane, to match `partial`.
template <typename T>
__global__ void channel_scale_backward_s(const T* grad_y, const T* x, T* grad_s, int pixels) {
    __shared__ T partial[256];
    const int t = threadIdx.x, plane = blockIdx.x;
    const T* g = grad_y + plane * pixels;
    const T* values = x + plane * pixels;
    T sum = T(0);
    for (int p = t; p < pixels; p += blockDim.x) sum += g[p] * values[p];
    partial[t] = sum;
    __syncthreads();
    // Halve the number of partial sums until one is left; all threads reach every __syncthreads().
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) partial[t] += partial[t + half];
        __syncthreads();
    }
    if (t == 0) grad_s[plane] = partial[0];
}
