"""Channel pruning by batch-norm scale: "network slimming" (Liu et al. 2017).

A batch norm multiplies each channel by its own scale gamma_c:  y_c = gamma_c * x_hat_c + beta_c.
Train with an L1 penalty  lambda * sum_c |gamma_c|  and many gammas go to (almost) zero; a channel
with gamma_c = 0 carries only the constant beta_c, so it can be removed with the convolution
filter that makes it and the input slice of the convolution that reads it. The network gets
physically smaller: fewer parameters, fewer multiply-adds, a faster step, even in dense NumPy.

**Which channels.** In a residual network the channels that travel along the shortcut are
added to every block's output: removing one from a single block would misalign the
addition, so they stay. What may go are the channels *inside* a branch, between its
convolutions. Each block class says which those are, in ``internal_channels``:

    cifar_resnet.BasicBlock      (conv1, bn1, conv2)                    conv1 -> bn1 -> relu -> conv2
    imagenet_resnet.Bottleneck   (conv1, bn1, conv2), (conv2, bn2, conv3)
    preact_resnet.PreActBlock    (conv1, bn2, conv2)   (bn1 normalises the block's input: shortcut channels)

The stem, the shortcut projections, every branch's last BN and the classifier keep their
channels. A model with no such blocks (DenseNet, Highway, ...) cannot be slimmed here.

**When the function is kept exactly.** The removed channel fed  relu(gamma_c * x_hat_c + beta_c)
to the next convolution. With gamma_c = 0 and beta_c <= 0 that is relu(beta_c) = 0 everywhere,
so removing it changes nothing, in training mode and in eval mode (batch norm normalises each
channel on its own). With beta_c > 0 it removes a constant input, which fine-tuning absorbs.

**The penalty.** Its subgradient, lambda * sign(gamma), is added to the gammas' gradients after
``backward()`` and before ``optimizer.step()`` (``add_bn_l1_subgradient_``, the ``--bn-l1`` flag of
``train``). Only the gammas that slimming may remove are penalised: shrinking one that must stay
would cost accuracy and gain nothing.
"""
import numpy

from minires.backends import get_array_module, to_device
from minires.nn.layers import BatchNorm2d, Conv2d
from minires.nn.sync_batch_norm import SyncBatchNorm
from minires.prune.masks import is_pruned


def internal_channel_groups(model):
    """``[(block's dotted name, producer conv, bn, consumer conv)]`` for every block of ``model`` that
    declares ``internal_channels``, checked: the three layers must agree on the channel count."""
    groups = []
    for prefix, block in model.named_modules():
        for producer_name, bn_name, consumer_name in getattr(type(block), "internal_channels", ()):
            producer, bn, consumer = (getattr(block, n) for n in (producer_name, bn_name, consumer_name))
            if not (isinstance(producer, Conv2d) and isinstance(bn, (BatchNorm2d, SyncBatchNorm)) and isinstance(consumer, Conv2d)):
                raise TypeError(f"{prefix}: internal_channels names {producer_name}, {bn_name}, {consumer_name}, "
                                "which must be a Conv2d, a BatchNorm2d and a Conv2d")
            if not producer.out_channels == bn.num_features == consumer.in_channels:
                raise ValueError(f"{prefix}: {producer_name} makes {producer.out_channels} channels, {bn_name} has "
                                 f"{bn.num_features}, {consumer_name} reads {consumer.in_channels}")
            groups.append((f"{prefix}.{bn_name}" if prefix else bn_name, producer, bn, consumer))
    return groups


def _groups_or_error(model):
    groups = internal_channel_groups(model)
    if not groups:
        raise ValueError(f"{type(model).__name__} has no residual blocks with channels inside their branches "
                         "(internal_channels), so network slimming cannot prune it; use magnitude pruning")
    return groups


def slimmable_gammas(model):
    """The batch-norm scales (Parameters) that slimming may remove channels of, in network order."""
    return [bn.weight for _, _, bn, _ in _groups_or_error(model)]


def add_l1_subgradient_(gammas, penalty):
    """Add ``penalty * sign(gamma)`` to each gamma's gradient: the subgradient of  penalty * sum |gamma|
    (0 at gamma = 0). Call it between backward and step, with ``slimmable_gammas(model)`` found once."""
    for gamma in gammas:
        if gamma.grad is not None:
            gamma.grad.data += penalty * get_array_module(gamma.data).sign(gamma.data)


def add_bn_l1_subgradient_(model, penalty):
    """``add_l1_subgradient_`` on every slimmable gamma of ``model`` (it walks the model on each call)."""
    add_l1_subgradient_(slimmable_gammas(model), penalty)


def _keep_channels(producer, bn, consumer, keep):
    """Shrink the three layers to the channels ``keep`` (sorted indices), in place: the same
    Parameter objects with smaller arrays, so the state-dict keys and their order stay."""
    def take(tensor, axis):
        index = to_device(keep, tensor.device)
        tensor.data = get_array_module(tensor.data).take(tensor.data, index, axis=axis)
        tensor.grad = None

    take(producer.weight, 0)
    if producer.bias is not None:
        take(producer.bias, 0)
    for tensor in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
        if tensor is not None:
            take(tensor, 0)
    take(consumer.weight, 1)
    producer.out_channels = bn.num_features = consumer.in_channels = len(keep)


def slim(model, amount):
    """Remove the fraction ``amount`` of ``model``'s slimmable channels, those whose |gamma| is
    smallest over the whole network (one global threshold, as in the paper). Every layer keeps at
    least its largest channel. Returns ``{"channels": [before, after], "layers": {bn name:
    [before, after]}, "threshold": the largest |gamma| removed}``; the model shrinks in place."""
    if not (isinstance(amount, (int, float)) and 0 <= amount < 1):
        raise ValueError(f"the fraction of channels to remove must be in [0, 1), got {amount!r}")
    if is_pruned(model):
        raise ValueError("this model holds magnitude-pruning masks; make them permanent with "
                         "prune.remove(...) before slimming it")
    groups = _groups_or_error(model)
    gammas = [numpy.abs(to_device(bn.weight.data, "cpu")).astype(numpy.float64) for _, _, bn, _ in groups]
    everything = numpy.concatenate(gammas)
    count = int(round(amount * everything.size))
    order = numpy.argsort(everything, kind="stable")
    removed = numpy.zeros(everything.size, dtype=bool)
    removed[order[:count]] = True
    report, start = {"layers": {}}, 0
    for (name, producer, bn, consumer), gamma in zip(groups, gammas):
        gone = removed[start:start + gamma.size]
        start += gamma.size
        keep = numpy.flatnonzero(~gone)
        if keep.size == 0:  # the whole branch would go: keep its strongest channel
            keep = numpy.array([int(numpy.argmax(gamma))])
        report["layers"][name] = [int(gamma.size), int(keep.size)]
        if keep.size < gamma.size:
            _keep_channels(producer, bn, consumer, keep)
    report["channels"] = [int(everything.size), sum(after for _, after in report["layers"].values())]
    report["threshold"] = float(everything[order[count - 1]]) if count else 0.0
    return report


def shrink_to_fit(model, state_dict):
    """Give ``model``'s slimmable layers the channel counts of ``state_dict`` (saved from a slimmed
    model) so that it loads: each keeps its first channels, which loading then overwrites."""
    for name, producer, bn, consumer in internal_channel_groups(model):
        saved = state_dict.get(f"{name}.weight")
        if saved is not None and numpy.shape(saved)[0] < bn.num_features:
            _keep_channels(producer, bn, consumer, numpy.arange(numpy.shape(saved)[0]))
