// Batch normalization: forward (training and evaluation) and backward.
//
// Data layout: x is (N, C, H, W) in C order (a 2-D (N, C) input is the case HW = 1),
// so channel c owns the m = N * HW values x[(n * C + c) * HW + s], for n < N and
// s < HW. Its j-th value (j = n * HW + s, 0 <= j < m) sits at (n * C + c) * HW + s.
//
// Thread-to-data mapping (every kernel but the two *_combine ones and
// batch_norm_update_running_stats): a 2-D grid of (P, C) blocks of 256 threads.
// blockIdx.y is the channel c, so each per-channel value (mean, inv_std, gamma, ...)
// is read once into a register; the P blocks of channel c share its m values out.
// Thread t of block p starts at value j0 = p * 256 + t and steps by the whole row of
// blocks, stride = P * 256 (a grid-stride loop over the channel's values alone).
// Neighbouring threads read neighbouring values of an image (coalesced; for a 2-D
// input, HW = 1, they read one value per sample, C apart). The wrapper picks P to
// fill the GPU (see minires/backends/cuda/batch_norm.py).
//
// The two per-channel sums (statistics, backward reduce) then take two kernels:
//  1. *_partials: each block adds up its threads' values (a tree in shared memory,
//     256 -> 128 -> ... -> 1) and writes one partial per (c, p) into a (C, P) array;
//  2. *_combine: one thread per channel (grid-stride over C) adds its P partials.
// batch_norm_update_running_stats is also one thread per channel.

// Call body(i) for the index i into x of every value of channel c = blockIdx.y that
// this thread owns: j = j0, j0 + stride, j0 + 2 stride, ... while j < m.
//
// No division per value: j0 and stride are split into (n, s) = (j / HW, j % HW) once,
// then added digit by digit, like adding two numbers written in base HW: add the s
// digits, carry 1 into n if s overflowed (stride_s < HW, so one carry is enough).
// The walk ends when n reaches N, i.e. when j reaches m = N * HW.
// With HW = 1 (2-D input) s is always 0 and stride_s = 0: n simply steps by stride.
template <typename Body>
__device__ __forceinline__ void for_each_value_of_channel(int N, int C, int HW, Body body) {
    const int c = blockIdx.y;
    const int j0 = int(blockIdx.x * blockDim.x + threadIdx.x);
    const int stride = int(gridDim.x * blockDim.x);
    int n = j0 / HW, s = j0 % HW;
    const int stride_n = stride / HW, stride_s = stride % HW;
    while (n < N) {
        body((n * C + c) * HW + s);
        s += stride_s;
        n += stride_n;
        if (s >= HW) {  // the carry
            s -= HW;
            ++n;
        }
    }
}

// Sum of one value from each thread of the block, returned to every thread.
// scratch is the block's __shared__ array of blockDim.x (= 256, a power of 2) slots.
template <typename T>
__device__ T block_sum(T value, T* scratch) {
    const int t = threadIdx.x;
    scratch[t] = value;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) scratch[t] += scratch[t + half];
        __syncthreads();
    }
    T total = scratch[0];
    __syncthreads();  // everyone has read the total before scratch is written again
    return total;
}

// ---- batch statistics: mean, var, inv_std per channel -------------------------------------
//
// One pass over x with *shifted data*. Per channel c, with a shift K (any constant) and
// d = x - K:
//   S1 = sum d,  S2 = sum d^2,  mean = K + S1/m,  var = (1/m) sum (x - mean)^2 = S2/m - (S1/m)^2
// (biased), inv_std = 1 / sqrt(var + eps). The shift changes nothing in exact arithmetic;
// it is there for float32. Without it (K = 0), var = E[x^2] - E[x]^2 is a small difference
// of two large numbers when the mean is far from 0 compared with the std: a channel with
// mean 1000 and std 1 has E[x^2] ~ 1e6, and rounding one such number to float32 already
// moves it by up to 0.03, a few percent of a var of 1; the long sums add far more (the
// cancellation: the leading digits of E[x^2] and E[x]^2 agree and drop out, leaving
// mostly rounding error). With K the channel's own first value x[c * HW], the d values
// have mean (mean - K), and K, being one of the channel's values, is typically within a few
// std of the mean: S2/m and (S1/m)^2 are then of the order of var itself and nothing
// cancels. (Only a K many std away from the mean, an extreme outlier, would bring the
// cancellation back.) Every thread of channel c reads the same K, so all partial sums of
// the channel use the same shift and can simply be added.

// Pass 1, block p of channel c: S1 and S2 over the values it owns, into
// partial_sum[c * P + p] and partial_squares[c * P + p], with P = gridDim.x.
template <typename T>
__global__ void batch_norm_statistics_partials(const T* x, T* partial_sum, T* partial_squares,
                                               int N, int C, int HW) {
    __shared__ T scratch[256];
    const int c = blockIdx.y;
    const T shift = x[c * HW];  // K: the channel's first value (n = 0, s = 0)
    T sum = T(0), squares = T(0);
    for_each_value_of_channel(N, C, HW, [&](int i) {
        const T d = x[i] - shift;
        sum += d;
        squares += d * d;
    });
    const T block_total = block_sum(sum, scratch);
    const T block_squares = block_sum(squares, scratch);
    if (threadIdx.x == 0) {
        partial_sum[c * gridDim.x + blockIdx.x] = block_total;
        partial_squares[c * gridDim.x + blockIdx.x] = block_squares;
    }
}

// Pass 2, one thread per channel c: S1 and S2 are the sums of the channel's P partials;
// then mean = K + S1/m, var = S2/m - (S1/m)^2 (clamped at 0: rounding may leave a tiny
// negative number for a constant channel), inv_std = 1 / sqrt(var + eps).
template <typename T>
__global__ void batch_norm_statistics_combine(const T* x, const T* partial_sum, const T* partial_squares,
                                              T* mean, T* var, T* inv_std, int C, int HW, int P, int m, T eps) {
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += blockDim.x * gridDim.x) {
        T sum = T(0), squares = T(0);
        for (int p = 0; p < P; ++p) {
            sum += partial_sum[c * P + p];
            squares += partial_squares[c * P + p];
        }
        const T shifted_mean = sum / T(m);  // mean of d = x - K
        const T channel_var = fmax(squares / T(m) - shifted_mean * shifted_mean, T(0));
        mean[c] = x[c * HW] + shifted_mean;  // K + S1/m
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

// ---- forward -----------------------------------------------------------------------------

// y = x_hat * gamma + beta with x_hat = (x - mean) * inv_std, for the values of channel c.
// Training passes the batch statistics, evaluation the running ones.
template <typename T>
__global__ void batch_norm_forward(const T* x, const T* mean, const T* inv_std, const T* gamma, const T* beta,
                                   T* y, int N, int C, int HW) {
    const int c = blockIdx.y;
    const T channel_mean = mean[c], channel_inv_std = inv_std[c], channel_gamma = gamma[c],
            channel_beta = beta[c];
    for_each_value_of_channel(N, C, HW, [&](int i) {
        const T x_hat = (x[i] - channel_mean) * channel_inv_std;
        y[i] = x_hat * channel_gamma + channel_beta;
    });
}

// ---- backward ----------------------------------------------------------------------------

// Per channel c, with g = dL/dy and x_hat = (x - mean) * inv_std recomputed from x:
//   dL/dbeta = sum g,   dL/dgamma = sum g * x_hat      (sums over the channel's m values)
// Pass 1, block p of channel c: both sums over the values it owns, into
// partial_g[c * P + p] and partial_g_x_hat[c * P + p], with P = gridDim.x.
template <typename T>
__global__ void batch_norm_backward_reduce_partials(const T* x, const T* grad_y, const T* mean, const T* inv_std,
                                                    T* partial_g, T* partial_g_x_hat, int N, int C, int HW) {
    __shared__ T scratch[256];
    const int c = blockIdx.y;
    const T channel_mean = mean[c], channel_inv_std = inv_std[c];
    T sum_g = T(0), sum_g_x_hat = T(0);
    for_each_value_of_channel(N, C, HW, [&](int i) {
        const T g = grad_y[i];
        sum_g += g;
        sum_g_x_hat += g * ((x[i] - channel_mean) * channel_inv_std);
    });
    const T block_g = block_sum(sum_g, scratch);
    const T block_g_x_hat = block_sum(sum_g_x_hat, scratch);
    if (threadIdx.x == 0) {
        partial_g[c * gridDim.x + blockIdx.x] = block_g;
        partial_g_x_hat[c * gridDim.x + blockIdx.x] = block_g_x_hat;
    }
}

// Pass 2, one thread per channel c: dL/dbeta and dL/dgamma are the sums of its P partials.
template <typename T>
__global__ void batch_norm_backward_reduce_combine(const T* partial_g, const T* partial_g_x_hat,
                                                   T* grad_gamma, T* grad_beta, int C, int P) {
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += blockDim.x * gridDim.x) {
        T sum_g = T(0), sum_g_x_hat = T(0);
        for (int p = 0; p < P; ++p) {
            sum_g += partial_g[c * P + p];
            sum_g_x_hat += partial_g_x_hat[c * P + p];
        }
        grad_beta[c] = sum_g;
        grad_gamma[c] = sum_g_x_hat;
    }
}

// Training (mean and var depend on x), for the values of channel c:
//   dL/dx = gamma * inv_std * (g - dL/dbeta / m - x_hat * dL/dgamma / m)
template <typename T>
__global__ void batch_norm_backward_input_training(const T* x, const T* grad_y, const T* mean, const T* inv_std,
                                                   const T* gamma, const T* grad_gamma, const T* grad_beta,
                                                   T* grad_x, int N, int C, int HW) {
    const int c = blockIdx.y;
    const T m = T(N * HW);
    const T channel_mean = mean[c], channel_inv_std = inv_std[c];
    const T scale = gamma[c] * channel_inv_std;                        // gamma * inv_std
    const T mean_g = grad_beta[c] / m, mean_g_x_hat = grad_gamma[c] / m;  // dL/dbeta / m, dL/dgamma / m
    for_each_value_of_channel(N, C, HW, [&](int i) {
        const T x_hat = (x[i] - channel_mean) * channel_inv_std;
        grad_x[i] = scale * (grad_y[i] - mean_g - x_hat * mean_g_x_hat);
    });
}

// Evaluation (mean and var are constants): dL/dx = g * gamma * inv_std.
template <typename T>
__global__ void batch_norm_backward_input_eval(const T* grad_y, const T* inv_std, const T* gamma, T* grad_x,
                                               int N, int C, int HW) {
    const int c = blockIdx.y;
    const T scale = gamma[c] * inv_std[c];
    for_each_value_of_channel(N, C, HW, [&](int i) { grad_x[i] = grad_y[i] * scale; });
}
