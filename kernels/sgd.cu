// One SGD step for one parameter array, fused into a single pass over memory.
//
// Thread-to-data mapping: elementwise. Each thread updates parameter elements
// i, i + (total threads), ... in a grid-stride loop, reading its gradient (and
// momentum buffer) element and writing the new parameter (and buffer) value in
// place. Elements never interact, so no thread waits for another.
//
// With g = grad, mu = momentum, tau = dampening, lambda = weight_decay (PyTorch's rule):
//   g   = g + lambda * p                       (only when lambda != 0)
//   buf = g                 on the first step, else   buf = mu * buf + (1 - tau) * g
//   g   = g + mu * buf      with Nesterov,     else   g = buf
//   p   = p - lr * g

// Plain SGD (momentum 0): no buffer.
template <typename T>
__global__ void sgd_step(T* param, const T* grad, T lr, T weight_decay, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        T g = grad[i];
        if (weight_decay != T(0)) g += weight_decay * param[i];
        param[i] -= lr * g;
    }
}

// SGD with momentum (mu > 0), updating the buffer and the parameter in place.
// is_first_step = 1 starts the buffer at g (its old contents are not read).
template <typename T>
__global__ void sgd_momentum_step(T* param, const T* grad, T* buffer, T lr, T momentum, T dampening,
                                  T weight_decay, int nesterov, int is_first_step, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        T g = grad[i];
        if (weight_decay != T(0)) g += weight_decay * param[i];
        T buf = is_first_step ? g : momentum * buffer[i] + (T(1) - dampening) * g;
        buffer[i] = buf;
        T direction = nesterov ? g + momentum * buf : buf;
        param[i] -= lr * direction;
    }
}
