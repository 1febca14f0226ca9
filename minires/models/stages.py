"""What every CIFAR-style ResNet shares: three stages of blocks, and He initialisation.

Every model in this package is built from three parts, and its forward pass is
exactly their composition:

    model.stem     the layers before the first block (a module)
    model.blocks   the blocks, in order (an ``nn.Sequential``: index, iterate, replace one)
    model.head     the layers after the last block, ending in the classifier (a module)

    model(x) == model.head(model.blocks(model.stem(x)))

So ``for block in model.blocks`` walks the network block by block, and
``model.blocks[i] = nn.Identity()`` removes block i from it.
"""
from minires.nn import init
from minires.nn.layers import Conv2d, Sequential


def make_stages(make_block, in_channels, widths, blocks_per_stage, expansion=1):
    """Stack ``blocks_per_stage`` blocks per width; the first block of every stage after
    the first halves the resolution (stride 2). Returns (Sequential of the blocks, output channels)."""
    blocks, channels = [], in_channels
    for stage, width in enumerate(widths):
        for index in range(blocks_per_stage):
            stride = 2 if stage > 0 and index == 0 else 1
            blocks.append(make_block(channels, width, stride))
            channels = width * expansion
    return Sequential(*blocks), channels


def he_init_convolutions(model):
    """Kaiming-normal (fan_out) weights for every convolution, as in the ResNet papers."""
    for module in model.modules():
        if isinstance(module, Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out")
