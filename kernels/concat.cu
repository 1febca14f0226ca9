// Channel concatenation of (N, C_k, H, W) tensors into y (N, C, H, W), C = sum of the C_k,
// and its backward, the split.
//
// Data layout: every array is NCHW and C-contiguous, so each image n of an input x with
// C_x channels is one contiguous run of `run` = C_x * H * W values, and in y that run
// lands, unchanged, at offset n * (C * H * W) + c0 * H * W, where c0 is the first of the
// input's channels in y. Concatenation is a copy of N runs.
//
// Thread-to-data mapping: elementwise, one thread per element of the INPUT (the smaller
// array), in a grid-stride loop over the N * run values; the wrapper launches once per
// input. Element i is value r = i - n * run of run n = i / run; neighbouring threads read
// and write neighbouring addresses. Each element of y is written by exactly one thread
// of exactly one launch (the inputs' channel ranges do not overlap and cover y).
//
// concat_copy_in copies x's runs into y (forward); concat_copy_out copies the same runs
// of dL/dy out into dL/dx (backward: each input's gradient is its block of dL/dy).

// y[n, c0 + c, h, w] = x[n, c, h, w]; y_image = C * H * W, offset = c0 * H * W.
template <typename T>
__global__ void concat_copy_in(const T* x, T* y, int n_values, int run, int y_image, int offset) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n_values; i += blockDim.x * gridDim.x) {
        int n = i / run;
        y[n * y_image + offset + (i - n * run)] = x[i];
    }
}

// dL/dx[n, c, h, w] = dL/dy[n, c0 + c, h, w]: y copied x unchanged, so x's gradient is
// y's gradient over x's channels.
template <typename T>
__global__ void concat_copy_out(const T* grad_y, T* grad_x, int n_values, int run, int y_image, int offset) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n_values; i += blockDim.x * gridDim.x) {
        int n = i / run;
        grad_x[i] = grad_y[n * y_image + offset + (i - n * run)];
    }
}
