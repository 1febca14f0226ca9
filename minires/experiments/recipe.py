"""Data, networks and the short SGD recipe that the gradient-flow experiments share.

Networks are the CIFAR ResNets of He et al. 2015 (``CifarResNet``): "resnet"
with option-A shortcuts, or "plain", the same layers with no shortcut at all.
The experiments often need to look *between* blocks, so a forward pass can be
written out block by block:

    features = stem(model, images)          # conv, BN, ReLU
    for block in model.blocks():
        features = block(features)          # x_{l+1} = block_l(x_l)
    logits = head(model, features)          # global average pool, fully connected

which computes exactly ``model(images)``.
"""
import numpy

import minires
import minires.functional as F
from minires import data, optim
from minires.experiments.common import progress_bar
from minires.models import CifarResNet
from minires.training.datasets import load_datasets

NETWORK_KINDS = {"plain": "none", "resnet": "A"}  # kind -> CifarResNet shortcut option


# ---- data ---------------------------------------------------------------------------------

def load_data(dataset, data_root=None, download=False, train_size=None, test_size=None, seed=0):
    """(train, test) data sets, each cut to a seeded random subset of the given size (None: all)."""
    train_set, test_set = load_datasets(dataset, data_root, download)
    return subset(train_set, train_size, seed), subset(test_set, test_size, seed)


def subset(dataset, size, seed):
    if size is None or size >= len(dataset):
        return dataset
    chosen = numpy.random.default_rng([seed, 2016]).permutation(len(dataset))[:size]
    return data.ArrayDataset(dataset.images[chosen], dataset.labels[chosen], dataset.classes)


def endless_batches(train_set, batch_size, seed, augment=False):
    """Shuffled, normalised training batches (numpy arrays), epoch after epoch, without end.

    The order depends only on ``seed``, so every network of an experiment sees the same batches.
    """
    normalize = data.Normalize(*data.mean_std(train_set))
    transform = normalize
    if augment:  # the CIFAR recipe: 4-pixel pad-and-crop and horizontal flips
        size = train_set.images.shape[-1]
        transform = data.Compose([data.RandomCrop(size, padding=4), data.RandomHorizontalFlip(), normalize])
    loader = data.DataLoader(train_set, batch_size, shuffle=True, drop_last=True, seed=seed,
                             prefetch=0, transform=transform)
    while True:
        yield from loader


def held_out_batches(test_set, train_set, batch_size=500):
    """Batches of the test set, normalised with the *training* set's statistics."""
    normalize = data.Normalize(*data.mean_std(train_set))
    return data.DataLoader(test_set, batch_size, prefetch=0, transform=normalize)


# ---- networks ----------------------------------------------------------------------------

def build_network(kind, depth, width, dataset_like, device="cpu"):
    """A "plain" or "resnet" CifarResNet shaped for the images and classes of ``dataset_like``."""
    if kind not in NETWORK_KINDS:
        raise ValueError(f"unknown network kind {kind!r}; choose one of: {', '.join(NETWORK_KINDS)}")
    in_channels, num_classes = dataset_like.images.shape[1], len(dataset_like.classes)
    return CifarResNet(depth, NETWORK_KINDS[kind], width, num_classes, in_channels).to(device)


def network_name(kind, depth):
    return f"{kind}-{depth}"


def stem(model, images):
    """The layers of a CifarResNet before its first block: conv, BN, ReLU."""
    return F.relu(model.bn1(model.conv1(images)))


def head(model, features):
    """The layers of a CifarResNet after its last block: global average pool, fully connected."""
    return model.fc(model.pool(features))


def changes_shape(block):
    """True for the first block of stages 2 and 3, which halves the resolution and doubles the width."""
    return block.conv1.stride != 1 or block.conv1.in_channels != block.conv1.out_channels


# ---- training and testing ----------------------------------------------------------------------

def sgd_with_steps(model, settings):
    """SGD with momentum 0.9 and weight decay; the lr is divided by 10 at each milestone
    (a fraction of ``settings["iterations"]``). The scheduler is stepped once per iteration."""
    optimizer = optim.SGD(model.parameters(), lr=settings["lr"], momentum=0.9,
                          weight_decay=settings["weight_decay"])
    milestones = sorted({max(1, round(f * settings["iterations"])) for f in settings["milestones"]})
    return optimizer, optim.MultiStepLR(optimizer, milestones, gamma=0.1)


def train_step(model, optimizer, images, labels, device):
    """One SGD step on one batch; returns (loss, number of misclassified images)."""
    logits = model(minires.tensor(images, device=device))
    loss = F.cross_entropy(logits, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item(), int((logits.numpy().argmax(axis=1) != labels).sum())


def train(model, batches, settings, device="cpu", progress=None, description="train", report_every=None, report=None):
    """Train for ``settings["iterations"]`` SGD steps on ``batches``, with a progress bar
    labelled ``description`` (``progress``: True, False, or None for "on a terminal").

    Every ``report_every`` steps (and after the last), calls
    ``report(iterations_done, training_error, lr)``, where ``training_error`` is the
    fraction of training images misclassified *while training* since the last report,
    as in the training curves of He et al. 2015.
    """
    optimizer, scheduler = sgd_with_steps(model, settings)
    model.train()
    wrong = seen = 0
    for step in progress_bar(range(settings["iterations"]), settings["iterations"], description, progress):
        lr = optimizer.param_groups[0]["lr"]
        images, labels = next(batches)
        _, mistakes = train_step(model, optimizer, images, labels, device)
        scheduler.step()
        wrong, seen = wrong + mistakes, seen + len(labels)
        done = step + 1
        if report is not None and (done % report_every == 0 or done == settings["iterations"]):
            report(done, wrong / seen, lr)
            model.train()  # report may have evaluated the model
            wrong = seen = 0
    return model


def error_rate(forward, loader, device="cpu"):
    """Fraction of ``loader``'s images that ``forward(images) -> logits`` gets wrong, without gradients.

    ``forward`` is usually the model itself (put it in eval mode first), or a
    function that runs the model in some modified way.
    """
    wrong = seen = 0
    with minires.no_grad():
        for images, labels in loader:
            logits = forward(minires.tensor(images, device=device))
            wrong += int((logits.numpy().argmax(axis=1) != labels).sum())
            seen += len(labels)
    return wrong / seen
