// Sigmoid forward and backward: y = 1 / (1 + e^-x), dL/dx = dL/dy * y * (1 - y).
//
// Thread-to-data mapping: the elementwise one of relu.cu. The tensor is a flat array of
// n values; thread t of block b starts at element i = b * blockDim.x + t and steps by the
// total number of threads (a grid-stride loop), so neighbouring threads touch
// neighbouring addresses.

// The stable formula of the NumPy path (minires/ops/smooth.py): exp only ever sees
// -|x| <= 0, so e = e^-|x| lies in [0, 1] and nothing overflows:
//   x >= 0:  y = 1 / (1 + e^-x) = 1 / (1 + e)
//   x <  0:  y = e^x / (1 + e^x) = e / (1 + e)
// At x = +-inf, e = 0 and y is exactly 1 or 0; a NaN stays NaN (it fails x >= 0, and
// e^NaN is NaN).
template <typename T>
__global__ void sigmoid_forward(const T* x, T* y, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        const T value = x[i];
        const bool non_negative = value >= T(0);
        const T e = exp(non_negative ? -value : value);  // e^-|x|
        y[i] = non_negative ? T(1) / (T(1) + e) : e / (T(1) + e);
    }
}

// dy/dx = e^-x / (1 + e^-x)^2 = y * (1 - y), read from the saved forward output y.
template <typename T>
__global__ void sigmoid_backward(const T* y, const T* grad_y, T* grad_x, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        grad_x[i] = grad_y[i] * (y[i] * (T(1) - y[i]));
    }
}
