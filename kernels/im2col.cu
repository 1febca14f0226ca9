// im2col and col2im: the two data-movement halves of a convolution done as a matrix product.
//
// x is an image batch (N, C, H, W) and col holds, for each image n, a matrix of
// C*kh*kw rows (channel c, kernel offset i, j) and OH*OW columns (output pixel oh, ow):
//
//     col[n, (c*kh + i)*kw + j, oh*OW + ow] = x[n, c, oh*sh + i - ph, ow*sw + j - pw]
//
// (0 where that input position lies in the padding). Both arrays are dense and C-ordered.
//
// Thread-to-data mapping: one thread per OUTPUT element, in a grid-stride loop.
// * im2col: one thread per element of col. It splits its flat index into
//   (n, c, i, j, oh, ow), works out which input pixel that is, and copies it (or a 0).
//   Neighbouring threads take neighbouring ow, so they write neighbouring addresses.
// * col2im: one thread per pixel of x. The forward copied a pixel into several
//   places of col (once per kernel offset that sees it); the thread gathers and adds
//   those places. Each pixel is summed by one thread, so no two threads write the
//   same address and no atomics are needed.

// col = im2col(x): a gather copy, col[n, (c, i, j), (oh, ow)] = x[n, c, oh*sh + i - ph, ow*sw + j - pw].
template <typename T>
__global__ void im2col(const T* x, T* col, int N, int C, int H, int W, int kh, int kw,
                       int sh, int sw, int ph, int pw, int OH, int OW) {
    int total = N * C * kh * kw * OH * OW;
    for (int index = blockIdx.x * blockDim.x + threadIdx.x; index < total; index += blockDim.x * gridDim.x) {
        // Peel the coordinates off the flat index, fastest-varying (ow) first.
        int ow = index % OW;
        int oh = (index / OW) % OH;
        int j = (index / (OW * OH)) % kw;
        int i = (index / (OW * OH * kw)) % kh;
        int nc = index / (OW * OH * kw * kh);  // n * C + c: the (image, channel) plane of x
        int h = oh * sh + i - ph;
        int w = ow * sw + j - pw;
        bool inside = h >= 0 && h < H && w >= 0 && w < W;
        col[index] = inside ? x[(nc * H + h) * W + w] : T(0);
    }
}

// dx = col2im(dcol), the adjoint of im2col: every entry of dcol goes back onto the pixel it was copied from,
//   dx[n, c, h, w] = sum over (i, j) with h = oh*sh + i - ph and w = ow*sw + j - pw of dcol[n, (c, i, j), (oh, ow)],
// taking only the (oh, ow) that exist: (h + ph - i) divisible by sh with 0 <= oh < OH, likewise for w.
template <typename T>
__global__ void col2im(const T* col, T* x, int N, int C, int H, int W, int kh, int kw,
                       int sh, int sw, int ph, int pw, int OH, int OW) {
    int total = N * C * H * W;
    for (int index = blockIdx.x * blockDim.x + threadIdx.x; index < total; index += blockDim.x * gridDim.x) {
        int w = index % W;
        int h = (index / W) % H;
        int nc = index / (W * H);  // n * C + c
        T sum = T(0);
        for (int i = 0; i < kh; ++i) {
            int oh_strided = h + ph - i;  // = oh * sh for the output row that saw pixel row h at offset i
            if (oh_strided < 0 || oh_strided % sh != 0 || oh_strided / sh >= OH) continue;
            int oh = oh_strided / sh;
            for (int j = 0; j < kw; ++j) {
                int ow_strided = w + pw - j;
                if (ow_strided < 0 || ow_strided % sw != 0 || ow_strided / sw >= OW) continue;
                int ow = ow_strided / sw;
                int row = (nc * kh + i) * kw + j;  // (n, c, i, j) as a row of the per-image col matrices
                sum += col[(row * OH + oh) * OW + ow];
            }
        }
        x[index] = sum;
    }
}
