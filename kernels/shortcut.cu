// The option-A shortcut: keep every stride-th pixel, append zero channels.
//
// Thread-to-data mapping: elementwise, in grid-stride loops. The forward pass
// gives one thread to each OUTPUT element y[n, c, h, w] (the zero channels too);
// the backward pass gives one thread to each INPUT element, which fetches the
// one output gradient it fed, if any (a gather: no two threads write the same
// place). A flat index i is split into (n, c, h, w) of a C-contiguous NCHW array
// by taking remainders: w = i % W, then h = (i / W) % H, and so on.

// y[n, c, h, w] = x[n, c, h * stride, w * stride]  for c < C_in,  0 for C_in <= c < C_out.
// x is (N, C_in, H, W); y is (N, C_out, H_out, W_out) with H_out = ceil(H / stride).
template <typename T>
__global__ void shortcut_forward(const T* x, T* y, int N, int C_in, int H, int W,
                                 int C_out, int H_out, int W_out, int stride) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N * C_out * H_out * W_out; i += blockDim.x * gridDim.x) {
        int w = i % W_out;
        int h = (i / W_out) % H_out;
        int c = (i / (W_out * H_out)) % C_out;
        int n = i / (W_out * H_out * C_out);
        y[i] = c < C_in ? x[((n * C_in + c) * H + h * stride) * W + w * stride] : T(0);
    }
}

// Each kept input pixel was copied once, unchanged, so it gets its output's gradient;
// skipped pixels get 0:  dx[n, c, h, w] = dy[n, c, h / stride, w / stride]
// when stride divides both h and w, else 0. The zero channels of y fed nothing.
template <typename T>
__global__ void shortcut_backward(const T* grad_y, T* grad_x, int N, int C_in, int H, int W,
                                  int C_out, int H_out, int W_out, int stride) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N * C_in * H * W; i += blockDim.x * gridDim.x) {
        int w = i % W;
        int h = (i / W) % H;
        int c = (i / (W * H)) % C_in;
        int n = i / (W * H * C_in);
        bool kept = h % stride == 0 && w % stride == 0;
        grad_x[i] = kept ? grad_y[((n * C_out + c) * H_out + h / stride) * W_out + w / stride] : T(0);
    }
}
