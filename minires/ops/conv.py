"""2-D convolution (cross-correlation, as in every deep-learning framework) by im2col + GEMM."""
from minires.engine.function import Function
from minires.ops.im2col import col2im, conv_output_size, im2col
from minires.ops.validate import pair, require_float, require_ndim, require_same_dtype


class Conv2dFunction(Function):
    def __init__(self, stride, padding):
        self.stride, self.padding = stride, padding

    def forward(self, x, weight, bias=None):
        OC, C, kh, kw = weight.shape
        N, _, H, W = x.shape
        col = im2col(x, (kh, kw), self.stride, self.padding)  # (C*kh*kw, N*OH*OW)
        y = weight.reshape(OC, C * kh * kw) @ col  # (OC, N*OH*OW): one GEMM
        if bias is not None:
            y += bias[:, None]
        self.save_for_backward(col, weight)
        self.x_shape = x.shape
        OH = conv_output_size(H, kh, self.stride[0], self.padding[0])
        OW = conv_output_size(W, kw, self.stride[1], self.padding[1])
        return y.reshape(OC, N, OH, OW).transpose(1, 0, 2, 3)  # channel-major view of NCHW

    def backward(self, grad):
        # Forward is Y = W_mat @ col (+ b), so with G = dL/dY as an (OC, N*OH*OW) matrix:
        #   dL/dW_mat = G @ col^T,   dL/db = G summed over columns,
        #   dL/dcol = W_mat^T @ G,   and dL/dx = col2im(dL/dcol), which adds each
        #   column entry back onto the input pixel im2col copied it from.
        col, weight = self.saved_tensors
        OC = weight.shape[0]
        g = grad.transpose(1, 0, 2, 3).reshape(OC, -1)  # free when grad is channel-major
        grad_x = grad_w = grad_b = None
        if self.needs_input_grad[0]:
            grad_col = weight.reshape(OC, -1).T @ g
            grad_x = col2im(grad_col, self.x_shape, weight.shape[2:], self.stride, self.padding)
        if self.needs_input_grad[1]:
            # Computed as (col @ g^T)^T: the same product, but OpenBLAS is many times slower
            # on g @ col^T, whose inner dimension (N*OH*OW) is huge and outer ones tiny.
            grad_w = (col @ g.T).T.reshape(weight.shape)
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            grad_b = g.sum(axis=1)
        return grad_x, grad_w, grad_b


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """Convolve x (N, C, H, W) with weight (OC, C, kh, kw); PyTorch's ``F.conv2d``."""
    op = "conv2d"
    require_ndim(op, "input", x, 4)
    require_ndim(op, "weight", weight, 4)
    require_float(op, "input", x)
    require_same_dtype(op, input=x, weight=weight, bias=bias)
    stride, padding = pair(op, "stride", stride), pair(op, "padding", padding)
    if min(stride) < 1 or min(padding) < 0:
        raise ValueError(f"{op}: stride must be >= 1 and padding >= 0, got stride={stride}, padding={padding}")
    N, C, H, W = x.shape
    OC, wC, kh, kw = weight.shape
    if C != wC:
        raise ValueError(
            f"{op}: input has {C} channels (shape {tuple(x.shape)}) but weight expects {wC} "
            f"(weight shape {tuple(weight.shape)})"
        )
    if kh > H + 2 * padding[0] or kw > W + 2 * padding[1]:
        raise ValueError(
            f"{op}: kernel {kh}x{kw} is larger than the padded input "
            f"{H + 2 * padding[0]}x{W + 2 * padding[1]} (input {H}x{W}, padding {padding})"
        )
    inputs = (x, weight)
    if bias is not None:
        if tuple(bias.shape) != (OC,):
            raise ValueError(f"{op}: bias must have shape ({OC},) to match weight {tuple(weight.shape)}, got {tuple(bias.shape)}")
        inputs += (bias,)
    return Conv2dFunction(stride, padding)(*inputs)


__all__ = ["conv2d", "Conv2dFunction"]
