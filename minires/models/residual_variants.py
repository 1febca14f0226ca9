"""The residual units of He et al. 2016, "Identity Mappings in Deep Residual Networks": what happens
when the shortcut is not a clean identity (Fig. 2, Table 1), and where BN and ReLU sit (Fig. 4, Table 2).

A unit computes y = f(h(x) + F(x)), with h the shortcut, F the branch and f what follows the addition.
Stack L units with f = identity and every h(x) = lambda x, and

    x_L = lambda^(L-l) x_l + (branch terms)     so     dL/dx_l = lambda^(L-l) dL/dx_L + (branch terms).

The factor lambda^(L-l) vanishes for lambda < 1 and explodes for lambda > 1: in a deep network only
lambda = 1, a shortcut that does nothing, lets the gradient reach the first layers undamped. Every
shortcut variant below puts something other than 1 in that place (a constant, a gate, a convolution,
random zeros), and every activation variant other than "full_preact" keeps something (a ReLU or a BN)
on the path between one unit's output and the next one's shortcut.

``shortcut=`` (Fig. 2; the branch is the original one, f = ReLU):
    identity              h(x) = x                                              (a)
    constant_scaling      h(x) = 0.5 x                                          (b)
    constant_scaling_both h(x) = 0.5 x and F scaled by 0.5 too                  (b)
    exclusive_gating      h(x) = (1 - g(x)) x and F scaled by g(x)              (c)
    shortcut_only_gating  h(x) = (1 - g(x)) x                                   (d)
    conv1x1               h(x) = BN(conv1x1(x)) in every unit                   (e)
    dropout               h(x) = dropout(x, 0.5) (PyTorch's inverted dropout)   (f)
with the gate g(x) = sigmoid(conv1x1(x) + b_g), one value per output channel and pixel, and b_g
initialised to ``gate_bias`` (negative: the gate starts nearly closed on F, open on the shortcut).

``activation=`` (Fig. 4; the shortcut is the identity h(x) = x):
    original          y = ReLU(x + BN(conv(ReLU(BN(conv(x))))))              (a)
    bn_after_add      y = ReLU(BN(x + conv(ReLU(BN(conv(x))))))              (b)
    relu_before_add   y = x + ReLU(BN(conv(ReLU(BN(conv(x))))))              (c)
    relu_only_preact  y = x + BN(conv(ReLU(BN(conv(ReLU(x))))))              (d)
    full_preact       y = x + conv(ReLU(BN(conv(ReLU(BN(x))))))              (e)
The pre-activation forms (d, e) leave the last unit's output unactivated, so the head starts with
ReLU (d) or BN-ReLU (e), as in the paper.

Where a unit halves the resolution and widens the channels, x in h(x) is the parameter-free option-A
shortcut of the 2015 paper (subsample, zero-pad the new channels; ``ZeroPadShortcut``), so that
``cifar_resnet(depth)`` with identity and original is exactly ``CifarResNet(depth, "A")`` and the
variants differ only in what the paper varies. The parts are those of every model here: ``stem``,
``blocks`` and ``head``; each unit has ``branch(x)`` (F), ``shortcut`` (h, a module: the gates, when
there are any, are applied in ``forward``) and, for the gated kinds, ``gate``.
"""
import minires.functional as F
from minires.models.cifar_resnet import CifarResNet, ZeroPadShortcut, projection
from minires.models.stages import he_init_convolutions, make_stages
from minires.nn import init
from minires.nn.layers import BatchNorm2d, Conv2d, Dropout, GlobalAvgPool2d, Identity, Linear, ReLU, Sequential
from minires.nn.module import Module

SHORTCUT_KINDS = ("identity", "constant_scaling", "constant_scaling_both", "exclusive_gating",
                  "shortcut_only_gating", "conv1x1", "dropout")
ACTIVATIONS = ("original", "bn_after_add", "relu_before_add", "relu_only_preact", "full_preact")
PRE_ACTIVATION = ("relu_only_preact", "full_preact")
SCALE, DROPOUT = 0.5, 0.5  # the paper's lambda and dropout ratio


class ConstantScale(Module):
    """y = scale * x: a fixed factor, not learned."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return x * self.scale

    def extra_repr(self):
        return f"scale={self.scale}"


class Gate(Module):
    """g(x) = sigmoid(conv(x) + b_g): a value in (0, 1) per output channel and pixel, from the unit's input
    (with the unit's stride, so it has the output's shape). b_g starts at ``bias``: at -6, g ~ 0.0025.
    The 2016 paper's gates are 1x1 convolutions; a highway network's transform gate (``highway.py``) is
    this gate with a 3x3 one."""

    def __init__(self, in_channels, out_channels, stride, bias, kernel_size=1):
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                           bias=True)
        init.constant_(self.conv.bias, bias)

    def forward(self, x):
        return F.sigmoid(self.conv(x))


def make_shortcut(kind, in_channels, out_channels, stride):
    """h(x) as a module (without the gates, which need g(x): the unit's forward applies them)."""
    carry = ZeroPadShortcut(out_channels, stride) if stride != 1 or in_channels != out_channels else Identity()
    if kind == "conv1x1":
        return projection(in_channels, out_channels, stride)
    if kind in ("constant_scaling", "constant_scaling_both"):
        return Sequential(carry, ConstantScale(SCALE))
    if kind == "dropout":
        return Sequential(carry, Dropout(DROPOUT))
    return carry  # identity and the two gated kinds


class VariantBlock(Module):
    """One residual unit of the kind ``shortcut`` with BN and ReLU placed as ``activation`` says."""

    def __init__(self, in_channels, out_channels, stride=1, shortcut="identity", activation="original",
                 gate_bias=-6.0):
        super().__init__()
        self.kind, self.activation = shortcut, activation
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNorm2d(in_channels if activation == "full_preact" else out_channels)
        self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = BatchNorm2d(out_channels)  # in "bn_after_add" it normalises the sum
        self.shortcut = make_shortcut(shortcut, in_channels, out_channels, stride)
        if shortcut in ("exclusive_gating", "shortcut_only_gating"):
            self.gate = Gate(in_channels, out_channels, stride, gate_bias)

    def branch(self, x):
        """F(x), with BN and ReLU where ``activation`` puts them (the module docstring's table)."""
        a = self.activation
        if a == "full_preact":
            return self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))
        if a == "relu_only_preact":
            x = F.relu(x)
        out = self.conv2(F.relu(self.bn1(self.conv1(x))))
        if a == "bn_after_add":
            return out
        out = self.bn2(out)
        return F.relu(out) if a == "relu_before_add" else out

    def forward(self, x):
        f, h = self.branch(x), self.shortcut(x)
        if self.kind == "constant_scaling_both":
            f = f * SCALE
        elif self.kind in ("exclusive_gating", "shortcut_only_gating"):
            g = self.gate(x)
            h = h * (1 - g)
            if self.kind == "exclusive_gating":
                f = f * g
        out = f + h
        if self.activation == "original":
            return F.relu(out)
        if self.activation == "bn_after_add":
            return F.relu(self.bn2(out))
        return out  # relu_before_add and the pre-activation forms: nothing after the addition

    def extra_repr(self):
        return f"shortcut={self.kind!r}, activation={self.activation!r}"


class VariantResNet(Module):
    """The CIFAR ResNet (depth 6n+2, three stages of width, 2 width, 4 width) built from ``VariantBlock``s."""

    def __init__(self, depth=110, shortcut="identity", activation="original", width=16, num_classes=10,
                 in_channels=3, gate_bias=-6.0):
        super().__init__()
        if shortcut not in SHORTCUT_KINDS:
            raise ValueError(f"shortcut must be one of {', '.join(SHORTCUT_KINDS)}; got {shortcut!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got {depth}")
        self.depth, self.shortcut_kind, self.activation = depth, shortcut, activation
        self.stem = Sequential(Conv2d(in_channels, width, 3, padding=1, bias=False), BatchNorm2d(width), ReLU())
        self.blocks, channels = make_stages(
            lambda cin, cout, stride: VariantBlock(cin, cout, stride, shortcut, activation, gate_bias),
            width, (width, 2 * width, 4 * width), (depth - 2) // 6)
        pre_head = {"relu_only_preact": [ReLU()], "full_preact": [BatchNorm2d(channels), ReLU()]}
        self.head = Sequential(*pre_head.get(activation, []), GlobalAvgPool2d(), Linear(channels, num_classes))
        he_init_convolutions(self)  # weights only: the gates keep their bias b_g

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def cifar_resnet(depth, shortcut="A", width=16, num_classes=10, in_channels=3, shortcut_kind="identity",
                 activation="original", gate_bias=-6.0):
    """A CIFAR ResNet of ``depth``: ``shortcut`` is the 2015 paper's option for the units that change shape
    ("A", "B", "C" or "none": a plain net); ``shortcut_kind`` and ``activation`` choose one of the 2016
    paper's units (this module's docstring), built on option A."""
    if shortcut_kind == "identity" and activation == "original":
        return CifarResNet(depth, shortcut, width, num_classes, in_channels)
    if shortcut != "A":
        raise ValueError(f"the 2016 variants (shortcut_kind={shortcut_kind!r}, activation={activation!r}) are built "
                         f"on option A, where the shape changes; got shortcut={shortcut!r}")
    return VariantResNet(depth, shortcut_kind, activation, width, num_classes, in_channels, gate_bias)
