// Softmax cross-entropy with label smoothing, forward and backward.
//
// Thread-to-data mapping. Forward: one block of 256 threads per row n of the
// (N, C) logits (a block moves on to row n + gridDim.x when N is larger than the
// grid). Thread t of the block looks after the classes c = t, t + 256, t + 512, ...
// of its row; the row's maximum and sums are then combined by a tree reduction in
// shared memory, and every thread of the block gets the result back.
// Backward: elementwise, one thread per logit (n, c), in a grid-stride loop.
//
// Target distribution: q_c = (1 - eps) [c == label] + eps / C. It is computed on
// the fly from the label, never stored.

// All threads of the block call this with their own value; each gets back the
// block's sum. `partial` is the block's shared scratch array of blockDim.x values.
template <typename T>
__device__ T block_sum(T* partial, T value) {
    partial[threadIdx.x] = value;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {  // 128 pairs, then 64, ..., then 1
        if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
        __syncthreads();
    }
    T total = partial[0];
    __syncthreads();  // everyone has read partial[0] before the array is used again
    return total;
}

// The same tree, keeping the larger value instead of adding.
template <typename T>
__device__ T block_max(T* partial, T value) {
    partial[threadIdx.x] = value;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) partial[threadIdx.x] = fmax(partial[threadIdx.x], partial[threadIdx.x + half]);
        __syncthreads();
    }
    T largest = partial[0];
    __syncthreads();
    return largest;
}

// For each row n, with z = logits[n, :]:
//   m = max_c z_c,   S = sum_c exp(z_c - m),   log p_c = z_c - m - log S   (stable log softmax)
//   probabilities[n, c] = p_c                  (saved for the backward pass)
//   row_loss[n] = -sum_c q_c log p_c
template <typename T>
__global__ void cross_entropy_forward(const T* logits, const long long* labels, T* probabilities, T* row_loss,
                                      T eps, int N, int C) {
    __shared__ T partial[256];
    for (int n = blockIdx.x; n < N; n += gridDim.x) {  // the same n for the whole block
        const T* z = logits + n * C;
        T* p = probabilities + n * C;

        T my_max = z[0];  // C >= 1; every thread starts from a real value of the row
        for (int c = threadIdx.x; c < C; c += blockDim.x) my_max = fmax(my_max, z[c]);
        T row_max = block_max(partial, my_max);

        T my_sum = T(0);
        for (int c = threadIdx.x; c < C; c += blockDim.x) my_sum += exp(z[c] - row_max);
        T log_sum = log(block_sum(partial, my_sum));

        T my_loss = T(0);
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            T log_p = z[c] - row_max - log_sum;
            T q = eps / T(C) + (c == labels[n] ? T(1) - eps : T(0));
            p[c] = exp(log_p);
            my_loss -= q * log_p;
        }
        T loss = block_sum(partial, my_loss);
        if (threadIdx.x == 0) row_loss[n] = loss;
    }
}

// L = -(1/N) sum_n sum_c q_nc log p_nc and sum_c q_nc = 1 give
//   dL/dz_nc = (p_nc - q_nc) / N,
// times the upstream gradient of the (scalar) loss, grad_loss[0].
template <typename T>
__global__ void cross_entropy_backward(const T* probabilities, const long long* labels, const T* grad_loss,
                                       T* grad_logits, T eps, int N, int C) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N * C; i += blockDim.x * gridDim.x) {
        int n = i / C, c = i % C;
        T q = eps / T(C) + (c == labels[n] ? T(1) - eps : T(0));
        grad_logits[i] = grad_loss[0] * (probabilities[i] - q) / T(N);
    }
}
