// Batch normalization: forward (training and evaluation) and backward.
//
// Data layout: x is (N, C, H, W) in C order (a 2-D (N, C) input is the case HW = 1),
// so channel c owns the m = N * HW values x[(n * C + c) * HW + s], for n < N and
// s < HW. Its j-th value (j = n * HW + s, 0 <= j < m) sits at (n * C + c) * HW + s.
//
// Two thread-to-data mappings:
//  * per-channel sums (batch_norm_statistics, batch_norm_backward_reduce): one block
//    of 256 threads per channel, block c = blockIdx.x. Thread t adds up the channel's
//    values j = t, t + 256, t + 512, ... into its own running total, then the 256
//    totals are added pairwise in shared memory (a tree: 256 -> 128 -> ... -> 1).
//    Neighbouring threads read neighbouring values of an image row (coalesced).
//  * elementwise kernels (all the others): a grid-stride loop over the n = N * C * HW
//    values, as in relu.cu; element i belongs to channel c = (i / HW) % C.

// Sum of one value from each thread of the block, returned to every thread.
// partial is the block's __shared__ array of blockDim.x (= 256, a power of 2) slots.
template <typename T>
__device__ T block_sum(T value, T* partial) {
    const int t = threadIdx.x;
    partial[t] = value;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) partial[t] += partial[t + half];
        __syncthreads();
    }
    T total = partial[0];
    __syncthreads();  // everyone has read the total before partial is written again
    return total;
}

// Where the j-th of channel c's m values lives in x.
__device__ inline int channel_value_index(int j, int c, int C, int HW) {
    return ((j / HW) * C + c) * HW + j % HW;
}

// Per channel c, in two passes over its m = N * HW values:
//   mean = (1/m) sum x,   var = (1/m) sum (x - mean)^2   (biased),   inv_std = 1 / sqrt(var + eps)
// The second pass subtracts the mean before squaring, which stays accurate in float32
// where E[x^2] - E[x]^2 would cancel catastrophically for channels far from zero.
template <typename T>
__global__ void batch_norm_statistics(const T* x, T* mean, T* var, T* inv_std, int N, int C, int HW, T eps) {
    __shared__ T partial[256];
    const int c = blockIdx.x, m = N * HW;
    T sum = T(0);
    for (int j = threadIdx.x; j < m; j += blockDim.x) sum += x[channel_value_index(j, c, C, HW)];
    const T channel_mean = block_sum(sum, partial) / T(m);
    T squares = T(0);
    for (int j = threadIdx.x; j < m; j += blockDim.x) {
        const T centered = x[channel_value_index(j, c, C, HW)] - channel_mean;
        squares += centered * centered;
    }
    const T channel_var = block_sum(squares, partial) / T(m);
    if (threadIdx.x == 0) {
        mean[c] = channel_mean;
        var[c] = channel_var;
        inv_std[c] = rsqrt(channel_var + eps);
    }
}

// Running averages, updated in place, one thread per channel (grid-stride over C):
//   running_mean = (1 - momentum) running_mean + momentum mean
//   running_var  = (1 - momentum) running_var  + momentum var m / (m - 1)   (unbiased var)
template <typename T>
__global__ void batch_norm_update_running_stats(T* running_mean, T* running_var, const T* mean, const T* var,
                                                int C, int m, T momentum) {
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += blockDim.x * gridDim.x) {
        running_mean[c] = running_mean[c] * (T(1) - momentum) + momentum * mean[c];
        running_var[c] = running_var[c] * (T(1) - momentum) + momentum * (var[c] * (T(m) / T(m - 1)));
    }
}

// y = x_hat * gamma + beta with x_hat = (x - mean) * inv_std, per channel c.
// Training passes the batch statistics, evaluation the running ones.
template <typename T>
__global__ void batch_norm_forward(const T* x, const T* mean, const T* inv_std, const T* gamma, const T* beta,
                                   T* y, int n, int C, int HW) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        const int c = (i / HW) % C;
        const T x_hat = (x[i] - mean[c]) * inv_std[c];
        y[i] = x_hat * gamma[c] + beta[c];
    }
}

// Per channel c, with g = dL/dy and x_hat recomputed from x:
//   dL/dbeta = sum g,   dL/dgamma = sum g * x_hat      (sums over the channel's m values)
template <typename T>
__global__ void batch_norm_backward_reduce(const T* x, const T* grad_y, const T* mean, const T* inv_std,
                                           T* grad_gamma, T* grad_beta, int N, int C, int HW) {
    __shared__ T partial[256];
    const int c = blockIdx.x, m = N * HW;
    T sum_g = T(0), sum_g_x_hat = T(0);
    for (int j = threadIdx.x; j < m; j += blockDim.x) {
        const int i = channel_value_index(j, c, C, HW);
        sum_g += grad_y[i];
        sum_g_x_hat += grad_y[i] * ((x[i] - mean[c]) * inv_std[c]);
    }
    const T total_g = block_sum(sum_g, partial);
    const T total_g_x_hat = block_sum(sum_g_x_hat, partial);
    if (threadIdx.x == 0) {
        grad_beta[c] = total_g;
        grad_gamma[c] = total_g_x_hat;
    }
}

// Training (mean and var depend on x), per element of channel c:
//   dL/dx = gamma * inv_std * (g - dL/dbeta / m - x_hat * dL/dgamma / m)
template <typename T>
__global__ void batch_norm_backward_input_training(const T* x, const T* grad_y, const T* mean, const T* inv_std,
                                                   const T* gamma, const T* grad_gamma, const T* grad_beta,
                                                   T* grad_x, int n, int C, int HW) {
    const T m = T(n / C);
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        const int c = (i / HW) % C;
        const T x_hat = (x[i] - mean[c]) * inv_std[c];
        grad_x[i] = (gamma[c] * inv_std[c]) * (grad_y[i] - grad_beta[c] / m - x_hat * (grad_gamma[c] / m));
    }
}

// Evaluation (mean and var are constants): dL/dx = g * gamma * inv_std.
template <typename T>
__global__ void batch_norm_backward_input_eval(const T* grad_y, const T* inv_std, const T* gamma, T* grad_x,
                                               int n, int C, int HW) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        const int c = (i / HW) % C;
        grad_x[i] = grad_y[i] * (gamma[c] * inv_std[c]);
    }
}
