"""Data, networks and the short SGD recipe that the gradient-flow experiments share.

Networks are the CIFAR ResNets of He et al. 2015 (``CifarResNet``): "resnet"
with option-A shortcuts, or "plain", the same layers with no shortcut at all; the
gradient-norm sweep can add "highway" (Srivastava et al. 2015, the same layout with
gated shortcuts) and "densenet" (Huang et al. 2017, as many 3x3 convolutions).
The experiments often need to look *between* blocks: at every block's input x_l
and at the gradient dL/dx_l arriving there. ``BlockWatch`` gets both from module
hooks (a forward hook and a full backward hook on each block, as one would in
PyTorch), so the forward pass stays ``model(images)``. Training goes through
``minires.training.train_steps``, the loop that the train command uses too.
"""
import numpy

from minires import data, optim
from minires.models import CifarResNet, DenseNet, HighwayNet
from minires.training.augmentation import make_transforms
from minires.training.dataset_registry import load_datasets

NETWORK_KINDS = ("plain", "resnet")  # the two networks every experiment compares


def densenet_like(depth, width, num_classes, in_channels):
    """The DenseNet with as many 3x3 convolutions as a ResNet of ``depth`` (6n+2: 2n per stage): 2n dense
    layers per block (DenseNet depth 6n+4, counting the first conv, the two transitions and the classifier),
    growth rate ``width``."""
    return DenseNet(depth + 2, growth_rate=width, num_classes=num_classes, in_channels=in_channels)


# kind -> builder(depth, width, num_classes, in_channels)
BUILDERS = {
    "plain": lambda depth, width, k, c: CifarResNet(depth, "none", width, k, c),
    "resnet": lambda depth, width, k, c: CifarResNet(depth, "A", width, k, c),
    "highway": lambda depth, width, k, c: HighwayNet(depth, width, k, c),
    "densenet": densenet_like,
}


# ---- data ---------------------------------------------------------------------------------

def load_data(dataset, data_root=None, download=False, train_size=None, test_size=None, seed=0):
    """(train, test) data sets, each cut to a seeded random subset of the given size (None: all)."""
    train_set, test_set = load_datasets(dataset, data_root, download)
    return subset(train_set, train_size, seed), subset(test_set, test_size, seed)


def training_data_and_test_batches(settings, data_root, download, seed):
    """(training set, test batches) for an experiment's ``dataset``, ``train_size`` and ``test_size`` settings;
    the test batches are normalised with the training set's statistics."""
    train_set, test_set = load_data(settings["dataset"], data_root, download,
                                    settings["train_size"], settings["test_size"], seed)
    return train_set, held_out_batches(test_set, train_set)


def subset(dataset, size, seed):
    if size is None or size >= len(dataset):
        return dataset
    chosen = numpy.random.default_rng([seed, 2016]).permutation(len(dataset))[:size]
    return data.ArrayDataset(dataset.images[chosen], dataset.labels[chosen], dataset.classes)


def endless_batches(train_set, batch_size, seed, augment=False):
    """Shuffled, normalised training batches (numpy arrays), epoch after epoch, without end;
    with ``augment``, pad-crop and flipped as in the CIFAR recipe.

    The order depends only on ``seed``, so every network of an experiment sees the same batches.
    """
    transform, _ = make_transforms(train_set, augment)
    loader = data.DataLoader(train_set, batch_size, shuffle=True, drop_last=True, seed=seed,
                             prefetch=0, transform=transform)
    while True:
        yield from loader


def held_out_batches(test_set, train_set, batch_size=500):
    """Batches of the test set, normalised with the *training* set's statistics."""
    _, normalize = make_transforms(train_set, augment=False)
    return data.DataLoader(test_set, batch_size, prefetch=0, transform=normalize)


# ---- networks ----------------------------------------------------------------------------

def build_network(kind, depth, width, dataset_like, device="cpu"):
    """A network of ``kind`` (a key of BUILDERS) shaped for the images and classes of ``dataset_like``."""
    if kind not in BUILDERS:
        raise ValueError(f"unknown network kind {kind!r}; choose one of: {', '.join(BUILDERS)}")
    in_channels, num_classes = dataset_like.images.shape[1], len(dataset_like.classes)
    return BUILDERS[kind](depth, width, num_classes, in_channels).to(device)


def network_name(kind, depth):
    return f"{kind}-{depth}"


class BlockWatch:
    """Every block's input x_l and its gradient dL/dx_l, caught by hooks on the blocks.

        with BlockWatch(model) as watch:
            F.cross_entropy(model(images), labels).backward()
        watch.inputs   # [x_0, ..., x_L]: x_0 the first block's input (the stem's output), x_L the last's output
        watch.grads    # [dL/dx_0, ..., dL/dx_L] (Tensors)

    A forward hook on block l keeps its input (and, on the last block, its output); a full
    backward hook keeps its ``grad_input`` (and, on the last block, ``grad_output``). The
    blocks run one after the other, so a block's input gradient is the whole dL/dx_l. Each
    forward pass and each backward pass overwrites what the previous one left. Leaving the
    ``with`` (or ``remove()``) takes the hooks off.
    """

    def __init__(self, model):
        blocks = list(model.blocks)
        self.inputs = [None] * (len(blocks) + 1)
        self.grads = [None] * (len(blocks) + 1)
        self.handles = []
        for l, block in enumerate(blocks):
            last = l == len(blocks) - 1
            self.handles.append(block.register_forward_hook(self._keep_input(l, last)))
            self.handles.append(block.register_full_backward_hook(self._keep_gradient(l, last)))

    def _keep_input(self, l, last):
        def hook(block, args, output):
            self.inputs[l] = args[0]
            if last:
                self.inputs[l + 1] = output
        return hook

    def _keep_gradient(self, l, last):
        def hook(block, grad_input, grad_output):
            self.grads[l] = grad_input[0]
            if last:
                self.grads[l + 1] = grad_output[0]
        return hook

    def remove(self):
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.remove()


# ---- training ----------------------------------------------------------------------------

def sgd_with_steps(model, settings):
    """SGD with momentum 0.9 and weight decay; the lr is divided by 10 at each milestone
    (a fraction of ``settings["iterations"]``). Step the scheduler once per iteration
    (``train_steps(..., scheduler=scheduler)``)."""
    optimizer = optim.SGD(model.parameters(), lr=settings["lr"], momentum=0.9,
                          weight_decay=settings["weight_decay"])
    milestones = sorted({max(1, round(f * settings["iterations"])) for f in settings["milestones"]})
    return optimizer, optim.MultiStepLR(optimizer, milestones, gamma=0.1)
