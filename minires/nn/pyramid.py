"""Spatial pyramid pooling (He et al. 2014, "Spatial Pyramid Pooling in Deep Convolutional
Networks for Visual Recognition"): a fixed-length vector from feature maps of any size.

A classifier's Linear layer needs the same number of features for every image, so a network
with a Linear head normally needs one input size. SPP pools the (N, C, H, W) feature maps at
several *levels*: at level l the map is cut into an l x l grid of bins, whatever H and W are,
and each bin keeps its maximum (adaptive max pooling, ``F.adaptive_max_pool2d``):

    level 1:  1 x 1 bin   ->  C features   (the global max)
    level 2:  2 x 2 bins  ->  4C features  (the max of each quadrant)
    level 4:  4 x 4 bins  -> 16C features

Each level's (N, C, l, l) result is flattened to (N, C * l * l) (channel-major: all of
channel 0's bins, then channel 1's, ...) and the levels are concatenated, in the order
given, into (N, C * sum(l * l)): 21C features for levels (1, 2, 4), from a 32x32 map or a
48x48 one. The coarse levels say *whether* a feature is present, the fine ones roughly
*where*. A level finer than the map (l > H) repeats pixels across bins, as adaptive pooling does.

The gradient needs nothing new: adaptive max pooling sends each bin's gradient to the pixel
that won it, and flattening and concatenating only move gradients back to their places.
"""
import minires.functional as F
from minires.nn.module import Module
from minires.ops.shape import cat


class SpatialPyramidPool2d(Module):
    """(N, C, H, W) -> (N, C * sum(l * l for l in levels)), for any H and W."""

    def __init__(self, levels=(1, 2, 4)):
        super().__init__()
        try:
            levels = tuple(levels)
        except TypeError:
            raise TypeError(f"SpatialPyramidPool2d: levels must be a sequence of grid sizes such as (1, 2, 4), "
                            f"got {levels!r}") from None
        if not levels:
            raise ValueError("SpatialPyramidPool2d: levels is empty; give at least one grid size, e.g. (1, 2, 4)")
        bad = [l for l in levels if isinstance(l, bool) or not isinstance(l, int) or l < 1]
        if bad:
            raise ValueError(f"SpatialPyramidPool2d: every level must be a positive int (an l x l grid of bins), "
                             f"got {bad[0]!r} in levels {levels}")
        self.levels = levels
        self.bins = sum(l * l for l in levels)  # bins per channel: the output has C * bins features

    def output_features(self, channels):
        """The output length for ``channels`` input channels: what the Linear after it takes."""
        return channels * self.bins

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"SpatialPyramidPool2d expects (N, C, H, W) feature maps, got shape {tuple(x.shape)}")
        return cat([F.adaptive_max_pool2d(x, l).flatten(1) for l in self.levels], dim=1)

    def extra_repr(self):
        return f"levels={self.levels}"
