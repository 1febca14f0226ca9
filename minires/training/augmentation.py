"""The data pipeline of the ResNet recipe, for training and for evaluation.

Every image is normalised per channel with the *training* set's mean and standard
deviation. With ``augment`` (the CIFAR recipe of He et al. 2015), training images
are first padded by 4 pixels on each side and cut back to their size at a random
place, then mirrored left-right half the time; evaluation images are only normalised.
"""
from minires import data


def make_transforms(train_set, augment):
    """(training transform, evaluation transform) for batches of ``train_set``'s images."""
    normalize = data.Normalize(*data.mean_std(train_set))
    if not augment:
        return normalize, normalize
    size = train_set.images.shape[-1]
    return data.Compose([data.RandomCrop(size, padding=4), data.RandomHorizontalFlip(), normalize]), normalize
