// im2col and col2im: the two data-movement halves of a convolution done as one matrix product.
//
// x is an image batch (N, C, H, W). col is ONE matrix for the whole batch: K = C*kh*kw rows
// (channel c, kernel offset i, j) and N*OH*OW columns (image n, output pixel oh, ow):
//
//     col[(c*kh + i)*kw + j, (n*OH + oh)*OW + ow] = x[n, c, oh*sh + i - ph, ow*sw + j - pw]
//
// (0 where that input position lies in the padding). Both arrays are dense and C-ordered.
// The convolution is then one GEMM, W_mat (OC, K) @ col (K, N*OH*OW) (minires/backends/cuda/conv.py).
//
// Thread-to-data mapping: 2-D grids of 256-thread blocks (BLOCK in loader.py), one grid row
// (blockIdx.y) per row of the data, and along x a grid-stride loop over that row.
// * im2col: grid (X, K). blockIdx.y is a row of col, one (c, i, j), which each thread splits
//   once. The X*BLOCK threads of that row walk its N*OH*OW columns: thread t copies columns
//   t, t + X*BLOCK, t + 2*X*BLOCK, ... Neighbouring threads take neighbouring columns, so a
//   warp writes 32 neighbouring addresses of col (and, for sw = 1, reads neighbouring pixels).
// * col2im: grid (X, C). blockIdx.y is a channel c; the X*BLOCK threads walk its N*H*W pixels
//   (n, h, w) the same way. The forward copied a pixel into several places of col, once per
//   kernel offset that sees it; the thread gathers and adds those places. Each pixel is summed
//   by one thread, so no two threads write the same address and no atomics are needed.
//
// No division inside the loops. Splitting a flat column into (n, oh, ow) costs a division and
// a remainder per digit, and a GPU has no integer divide instruction: each one is a long
// sequence of instructions, far more work than the copy itself. So every thread splits its
// first column and its step (X*BLOCK) into digits once, and then adds the step digit by digit,
// carrying as in an addition on paper (PixelWalk below).

// Walks the flat indices first, first + step, first + 2*step, ... of an (N, height, width) grid,
// keeping each as its digits (n, h, w). next() adds the step's digits: w first, carrying into h,
// then h, carrying into n, then n. One carry per digit is enough: a digit and the step's digit
// are both below the limit, so their sum (plus a carry of 1) is below twice the limit.
// The walk is over once n >= N.
struct PixelWalk {
    int index;                  // the flat index (n*height + h)*width + w
    int n, h, w;                // ... as digits
    int step, step_n, step_h, step_w;
    int height, width;

    __device__ PixelWalk(int first, int step_, int height_, int width_)
        : index(first), step(step_), height(height_), width(width_) {
        w = first % width;  // the only divisions: once per thread
        h = (first / width) % height;
        n = first / (width * height);
        step_w = step % width;
        step_h = (step / width) % height;
        step_n = step / (width * height);
    }

    __device__ void next() {
        index += step;
        w += step_w;
        if (w >= width) { w -= width; ++h; }
        h += step_h;
        if (h >= height) { h -= height; ++n; }
        n += step_n;
    }
};

// col = im2col(x): a gather copy, col[(c, i, j), (n, oh, ow)] = x[n, c, oh*sh + i - ph, ow*sw + j - pw].
template <typename T>
__global__ void im2col(const T* x, T* col, int N, int C, int H, int W, int kh, int kw,
                       int sh, int sw, int ph, int pw, int OH, int OW) {
    const int row = blockIdx.y;  // this block's row of col: (c, i, j)
    const int j = row % kw;
    const int i = (row / kw) % kh;
    const int c = row / (kw * kh);
    T* col_row = col + row * (N * OH * OW);
    for (PixelWalk out(blockIdx.x * blockDim.x + threadIdx.x, gridDim.x * blockDim.x, OH, OW);
         out.n < N; out.next()) {  // out.index is the column (n, oh, ow) = (out.n, out.h, out.w)
        int h = out.h * sh + i - ph;  // the input pixel that kernel offset (i, j) of output pixel (oh, ow) sees
        int w = out.w * sw + j - pw;
        bool inside = h >= 0 && h < H && w >= 0 && w < W;
        col_row[out.index] = inside ? x[((out.n * C + c) * H + h) * W + w] : T(0);
    }
}

// dx = col2im(dcol), the adjoint of im2col: every entry of dcol goes back onto the pixel it was copied from,
//   dx[n, c, h, w] = sum over (i, j) with h + ph = oh*sh + i and w + pw = ow*sw + j of dcol[(c, i, j), (n, oh, ow)],
// taking only the (oh, ow) that exist: 0 <= oh < OH and 0 <= ow < OW.
// The kernel rows i that see pixel row h are those with (h + ph - i) % sh == 0: with
// h + ph = oh_first*sh + i_first (one division), they are i = i_first, i_first + sh, ...
// (below kh), seen from output rows oh = oh_first, oh_first - 1, ... (down to 0). Likewise for w.
template <typename T>
__global__ void col2im(const T* col, T* x, int N, int C, int H, int W, int kh, int kw,
                       int sh, int sw, int ph, int pw, int OH, int OW) {
    const int c = blockIdx.y;  // this block's channel
    const int columns = N * OH * OW;
    for (PixelWalk px(blockIdx.x * blockDim.x + threadIdx.x, gridDim.x * blockDim.x, H, W);
         px.n < N; px.next()) {  // the pixel (n, h, w) = (px.n, px.h, px.w) of channel c
        const int oh_first = (px.h + ph) / sh;
        const int i_first = px.h + ph - oh_first * sh;
        const int ow_first = (px.w + pw) / sw;
        const int j_first = px.w + pw - ow_first * sw;
        const T* col_image = col + px.n * OH * OW;  // column (n, 0, 0) of row 0
        T sum = T(0);
        for (int i = i_first, oh = oh_first; i < kh && oh >= 0; i += sh, --oh) {
            if (oh >= OH) continue;  // past the last output row (the bottom padding)
            for (int j = j_first, ow = ow_first; j < kw && ow >= 0; j += sw, --ow) {
                if (ow >= OW) continue;
                int row = (c * kh + i) * kw + j;
                sum += col_image[row * columns + oh * OW + ow];
            }
        }
        x[((px.n * C + c) * H + px.h) * W + px.w] = sum;
    }
}
