// Max pooling, average pooling and global average pooling, forward and backward.
//
// Thread-to-data mapping. Tensors are NCHW and C-contiguous, so the N*C
// "planes" (one image channel each) lie one after another, each H*W values
// stored row by row. Input pixel (plane, h, w) is x[(plane*H + h)*W + w],
// output (plane, oh, ow) is y[(plane*OH + oh)*OW + ow].
//
// * Forward of max/avg pool: one thread per OUTPUT value (grid-stride loop over
//   all N*C*OH*OW outputs). The thread reads its kh x kw window and writes one y.
// * Backward of max/avg pool: one thread per INPUT pixel (grid-stride loop over
//   all N*C*H*W pixels). The thread finds the outputs whose windows contain its
//   pixel and adds up their gradients. This is a "gather": each grad_x value is
//   written by exactly one thread, so no two threads add into the same place and
//   no atomic operations are needed, even where windows overlap (stride < kernel).
// * Global average pool forward: one BLOCK of 256 threads per plane. The threads
//   sum strided parts of the plane, then combine their 256 partial sums in shared
//   memory by a tree reduction. Its backward is elementwise (grid-stride).
//
// Padding: window (oh, ow) covers input rows oh*sh - ph ... oh*sh - ph + kh - 1
// and columns ow*sw - pw ... ow*sw - pw + kw - 1; positions outside the image are
// padding. The Python op only allows padding <= kernel/2, so every window holds
// at least one real pixel.

// The first output index whose window reaches position `padded` (= h + ph) along one
// axis: the smallest o >= 0 with o*stride + kernel - 1 >= padded.
__device__ inline int first_window_containing(int padded, int kernel, int stride) {
    int reach = padded - kernel + 1;
    return reach <= 0 ? 0 : (reach + stride - 1) / stride;
}

// The last output index whose window starts at or before `padded`: the largest
// o < out_size with o*stride <= padded.
__device__ inline int last_window_containing(int padded, int stride, int out_size) {
    int o = padded / stride;
    return o < out_size - 1 ? o : out_size - 1;
}

// y = the largest x in the window (padding never wins, as if it were -inf).
// argmax = the window offset k = i*kw + j of that x; on ties the first (smallest k) wins.
template <typename T>
__global__ void max_pool_forward(const T* x, T* y, int* argmax, int planes, int H, int W, int OH, int OW,
                                 int kh, int kw, int sh, int sw, int ph, int pw) {
    int outputs = planes * OH * OW;
    for (int o = blockIdx.x * blockDim.x + threadIdx.x; o < outputs; o += blockDim.x * gridDim.x) {
        int ow = o % OW, oh = (o / OW) % OH, plane = o / (OW * OH);
        const T* image = x + plane * H * W;
        int top = oh * sh - ph, left = ow * sw - pw;  // the window's corner, maybe in the padding
        T best = T(0);
        int best_k = -1;  // no real pixel seen yet
        for (int i = 0; i < kh; ++i) {
            int h = top + i;
            if (h < 0 || h >= H) continue;
            for (int j = 0; j < kw; ++j) {
                int w = left + j;
                if (w < 0 || w >= W) continue;
                T value = image[h * W + w];
                // Strictly greater: a tie keeps the earlier k. A NaN wins, so it propagates
                // to y as numpy.maximum would propagate it.
                if (best_k < 0 || value > best || value != value) {
                    best = value;
                    best_k = i * kw + j;
                }
            }
        }
        y[o] = best;
        argmax[o] = best_k;
    }
}

// dL/dx[h, w] = sum of dL/dy over the outputs whose window contains (h, w) AND whose
// argmax points at (h, w): y = x[argmax], so only the winning pixel gets the gradient.
template <typename T>
__global__ void max_pool_backward(const T* grad_y, const int* argmax, T* grad_x, int planes, int H, int W,
                                  int OH, int OW, int kh, int kw, int sh, int sw, int ph, int pw) {
    int pixels = planes * H * W;
    for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < pixels; p += blockDim.x * gridDim.x) {
        int w = p % W, h = (p / W) % H, plane = p / (W * H);
        int oh_last = last_window_containing(h + ph, sh, OH);
        int ow_last = last_window_containing(w + pw, sw, OW);
        T sum = T(0);
        for (int oh = first_window_containing(h + ph, kh, sh); oh <= oh_last; ++oh) {
            int i = h + ph - oh * sh;  // the row of (h, w) inside window (oh, ow)
            for (int ow = first_window_containing(w + pw, kw, sw); ow <= ow_last; ++ow) {
                int j = w + pw - ow * sw;
                int o = (plane * OH + oh) * OW + ow;
                if (argmax[o] == i * kw + j) sum += grad_y[o];
            }
        }
        grad_x[p] = sum;
    }
}

// y = (1 / (kh*kw)) * sum of x over the window; padding counts as zeros but still
// counts in the divisor (PyTorch's count_include_pad=True).
template <typename T>
__global__ void avg_pool_forward(const T* x, T* y, int planes, int H, int W, int OH, int OW,
                                 int kh, int kw, int sh, int sw, int ph, int pw) {
    int outputs = planes * OH * OW;
    for (int o = blockIdx.x * blockDim.x + threadIdx.x; o < outputs; o += blockDim.x * gridDim.x) {
        int ow = o % OW, oh = (o / OW) % OH, plane = o / (OW * OH);
        const T* image = x + plane * H * W;
        int top = oh * sh - ph, left = ow * sw - pw;
        T sum = T(0);
        for (int i = 0; i < kh; ++i) {
            int h = top + i;
            if (h < 0 || h >= H) continue;
            for (int j = 0; j < kw; ++j) {
                int w = left + j;
                if (w >= 0 && w < W) sum += image[h * W + w];
            }
        }
        y[o] = sum / T(kh * kw);
    }
}

// dL/dx[h, w] = (1 / (kh*kw)) * sum of dL/dy over the outputs whose window contains (h, w).
template <typename T>
__global__ void avg_pool_backward(const T* grad_y, T* grad_x, int planes, int H, int W, int OH, int OW,
                                  int kh, int kw, int sh, int sw, int ph, int pw) {
    int pixels = planes * H * W;
    for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < pixels; p += blockDim.x * gridDim.x) {
        int w = p % W, h = (p / W) % H, plane = p / (W * H);
        int oh_last = last_window_containing(h + ph, sh, OH);
        int ow_last = last_window_containing(w + pw, sw, OW);
        T sum = T(0);
        for (int oh = first_window_containing(h + ph, kh, sh); oh <= oh_last; ++oh) {
            for (int ow = first_window_containing(w + pw, kw, sw); ow <= ow_last; ++ow) {
                sum += grad_y[(plane * OH + oh) * OW + ow];
            }
        }
        grad_x[p] = sum / T(kh * kw);
    }
}

// y[plane] = (1 / pixels) * sum of the plane's `pixels` values. One block per plane
// (blockIdx.x is the plane), launched with 256 threads to match `partial`.
template <typename T>
__global__ void global_avg_pool_forward(const T* x, T* y, int pixels) {
    __shared__ T partial[256];
    int t = threadIdx.x, plane = blockIdx.x;
    const T* values = x + plane * pixels;
    // Step 1: thread t sums values t, t + 256, t + 512, ... (neighbouring threads read
    // neighbouring addresses).
    T sum = T(0);
    for (int p = t; p < pixels; p += blockDim.x) sum += values[p];
    partial[t] = sum;
    __syncthreads();
    // Step 2: halve the number of partial sums until one is left: thread t < half adds
    // partial[t + half] into partial[t]. All threads reach every __syncthreads().
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) partial[t] += partial[t + half];
        __syncthreads();
    }
    if (t == 0) y[plane] = partial[0] / T(pixels);
}

// dL/dx[plane, h, w] = dL/dy[plane] / pixels: every pixel of the plane had the same share.
template <typename T>
__global__ void global_avg_pool_backward(const T* grad_y, T* grad_x, int planes, int pixels) {
    int n = planes * pixels;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        grad_x[i] = grad_y[i / pixels] / T(pixels);
    }
}
