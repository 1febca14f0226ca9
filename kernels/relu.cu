// ReLU forward and backward.
//
// Thread-to-data mapping (the simplest one, used by every elementwise kernel):
// the tensor is a flat array of n values. The launch starts gridDim.x blocks of
// blockDim.x threads; thread t of block b starts at element i = b * blockDim.x + t
// and then jumps ahead by the total number of threads (a "grid-stride loop"),
// so any n is covered by any grid size, and neighbouring threads touch
// neighbouring addresses (coalesced memory access).

template <typename T>
__global__ void relu_forward(const T* x, T* y, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        y[i] = x[i] > T(0) ? x[i] : T(0);
    }
}

// dL/dx = dL/dy where the forward input was positive, 0 elsewhere (0 at the kink).
// Reading the forward *output* y is enough: y > 0 exactly where x > 0.
template <typename T>
__global__ void relu_backward(const T* y, const T* grad_y, T* grad_x, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        grad_x[i] = y[i] > T(0) ? grad_y[i] : T(0);
    }
}
