// Adaptive average and max pooling, forward and backward.
//
// Bins (PyTorch's rule): along an axis of length H pooled to OH, bin i covers the rows
//   start_i = floor(i * H / OH)   up to (not including)   end_i = ceil((i + 1) * H / OH),
// and bin (i, j) of the output is the product of row bin i and column bin j. Bins may
// overlap (7 -> 3: [0,3) [2,5) [4,7)), and with OH > H several bins share one row.
//
// Thread-to-data mapping. Tensors are NCHW and C-contiguous, so the N*C "planes" (one
// image channel each) lie one after another: input pixel (plane, h, w) is
// x[(plane*H + h)*W + w], output (plane, i, j) is y[(plane*OH + i)*OW + j].
//
// * Forward (avg and max): one thread per OUTPUT value (grid-stride loop over all
//   N*C*OH*OW outputs); the thread reads its bin and writes one y (and, for max, the
//   winner's pixel index h*W + w within the plane).
// * Backward (avg and max): one thread per INPUT pixel (grid-stride loop over all
//   N*C*H*W pixels). The thread works out the range of bins that cover its row and its
//   column (bins_covering) and gathers their gradients. Each grad_x value is written by
//   exactly one thread, so overlapping bins need no atomic operations.

// The first and last bin along one axis that cover position h (see the derivation):
//   bin i covers h  <=>  start_i <= h < end_i
//   start_i <= h    <=>  i*H < (h + 1)*OH   <=>  i <= ((h + 1)*OH - 1) / H   (integer division)
//   h < end_i       <=>  h*OH < (i + 1)*H   <=>  i >= h*OH / H
// Every position is covered by at least one bin, so first <= last.
__device__ inline int first_bin_covering(int h, int H, int OH) { return h * OH / H; }
__device__ inline int last_bin_covering(int h, int H, int OH) { return ((h + 1) * OH - 1) / H; }

__device__ inline int bin_start(int i, int H, int OH) { return i * H / OH; }
__device__ inline int bin_end(int i, int H, int OH) { return ((i + 1) * H + OH - 1) / OH; }  // ceil

// y = the mean of bin (i, j).
template <typename T>
__global__ void adaptive_avg_pool_forward(const T* x, T* y, int planes, int H, int W, int OH, int OW) {
    int outputs = planes * OH * OW;
    for (int o = blockIdx.x * blockDim.x + threadIdx.x; o < outputs; o += blockDim.x * gridDim.x) {
        int j = o % OW, i = (o / OW) % OH, plane = o / (OW * OH);
        const T* image = x + plane * H * W;
        int h0 = bin_start(i, H, OH), h1 = bin_end(i, H, OH);
        int w0 = bin_start(j, W, OW), w1 = bin_end(j, W, OW);
        T sum = T(0);
        for (int h = h0; h < h1; ++h) {
            for (int w = w0; w < w1; ++w) sum += image[h * W + w];
        }
        y[o] = sum / T((h1 - h0) * (w1 - w0));
    }
}

// dL/dx[h, w] = sum over the bins (i, j) covering (h, w) of dL/dy[i, j] / (size of bin (i, j)):
// y[i, j] is the mean of its bin, so each of the bin's pixels has an equal share.
template <typename T>
__global__ void adaptive_avg_pool_backward(const T* grad_y, T* grad_x, int planes, int H, int W, int OH, int OW) {
    int pixels = planes * H * W;
    for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < pixels; p += blockDim.x * gridDim.x) {
        int w = p % W, h = (p / W) % H, plane = p / (W * H);
        const T* g = grad_y + plane * OH * OW;
        int i_last = last_bin_covering(h, H, OH), j_last = last_bin_covering(w, W, OW);
        T sum = T(0);
        for (int i = first_bin_covering(h, H, OH); i <= i_last; ++i) {
            int rows = bin_end(i, H, OH) - bin_start(i, H, OH);
            for (int j = first_bin_covering(w, W, OW); j <= j_last; ++j) {
                int cols = bin_end(j, W, OW) - bin_start(j, W, OW);
                sum += g[i * OW + j] / T(rows * cols);
            }
        }
        grad_x[p] = sum;
    }
}

// y = the largest x in bin (i, j); pixel = where it sits in its plane, h*W + w. The bin is
// scanned row by row and only a strictly greater value replaces the best, so the first of
// equal maxima wins (as numpy.argmax on the NumPy path). The first NaN wins and stays, so
// it propagates to y.
template <typename T>
__global__ void adaptive_max_pool_forward(const T* x, T* y, int* pixel, int planes, int H, int W, int OH, int OW) {
    int outputs = planes * OH * OW;
    for (int o = blockIdx.x * blockDim.x + threadIdx.x; o < outputs; o += blockDim.x * gridDim.x) {
        int j = o % OW, i = (o / OW) % OH, plane = o / (OW * OH);
        const T* image = x + plane * H * W;
        int h0 = bin_start(i, H, OH), h1 = bin_end(i, H, OH);
        int w0 = bin_start(j, W, OW), w1 = bin_end(j, W, OW);
        int best_pixel = h0 * W + w0;  // every bin holds at least one pixel
        T best = image[best_pixel];
        for (int h = h0; h < h1; ++h) {
            for (int w = w0; w < w1; ++w) {
                T value = image[h * W + w];
                if (value > best || (value != value && best == best)) {
                    best = value;
                    best_pixel = h * W + w;
                }
            }
        }
        y[o] = best;
        pixel[o] = best_pixel;
    }
}

// dL/dx[h, w] = sum of dL/dy over the bins covering (h, w) whose winner is (h, w):
// y[i, j] = x[winner], so only the winning pixel gets the bin's gradient.
template <typename T>
__global__ void adaptive_max_pool_backward(const T* grad_y, const int* pixel, T* grad_x, int planes, int H, int W,
                                           int OH, int OW) {
    int pixels = planes * H * W;
    for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < pixels; p += blockDim.x * gridDim.x) {
        int w = p % W, h = (p / W) % H, plane = p / (W * H);
        const T* g = grad_y + plane * OH * OW;
        const int* winner = pixel + plane * OH * OW;
        int me = h * W + w;
        int i_last = last_bin_covering(h, H, OH), j_last = last_bin_covering(w, W, OW);
        T sum = T(0);
        for (int i = first_bin_covering(h, H, OH); i <= i_last; ++i) {
            for (int j = first_bin_covering(w, W, OW); j <= j_last; ++j) {
                if (winner[i * OW + j] == me) sum += g[i * OW + j];
            }
        }
        grad_x[p] = sum;
    }
}
