"""What pruning bought: parameters, multiply-adds, step times and accuracy of a model.

``measure(model, test_loader, ...)`` returns one row of ``prune.json``:

    params            every parameter (a pruning mask is a buffer, not counted)
    nonzero_params    the parameters that are not exactly 0
    macs              multiply-adds of one image (minires.summary), as the dense arrays compute them
    nonzero_macs      the multiply-adds of the non-zero weights: what a sparse kernel would compute
    train_step_ms     median time of one SGD step (forward, backward, update) on a batch
    inference_step_ms median time of one forward pass in eval mode without a graph
    accuracy          on the test loader

Magnitude pruning lowers ``nonzero_params`` and ``nonzero_macs`` but not the time: dense NumPy
(and cuBLAS) multiply zeros as fast as any other number, and the mask costs one more multiply.
Network slimming shrinks the arrays themselves, so ``params``, ``macs`` and the times all fall.

The step times run on a copy of the model (rebuilt from its state dict), so measuring never
trains the model that is measured.
"""
import statistics
import time

import numpy

import minires
import minires.functional as F
from minires import optim
from minires.backends import to_device
from minires.nn.layers import Conv2d, Linear
from minires.prune.loading import prepare_to_load
from minires.summary import summary
from minires.training.loop import evaluate


def nonzero(array):
    return int(numpy.count_nonzero(to_device(array, "cpu")))


def nonzero_parameters(model):
    """The parameters that are not 0 as the model uses them: for a pruned ``weight_orig``, those of
    ``weight = weight_orig * weight_mask``."""
    count = 0
    for module in model.modules():
        pruned = module.__dict__.get("_pruned", {})
        for name, parameter in module._parameters.items():
            if parameter is not None:
                used = getattr(module, name[:-len("_orig")]) if name.endswith("_orig") and name[:-5] in pruned else parameter
                count += nonzero(used.data)
    return count


def nonzero_macs(model, table):
    """The multiply-adds of ``model``'s non-zero weights, from its ``minires.summary`` table: each
    convolution's and linear layer's count times the fraction of its weights that are not 0."""
    modules, total = dict(model.named_modules()), 0
    for row in table.rows:
        module = modules.get(row.name)
        if isinstance(module, (Conv2d, Linear)) and row.macs:
            total += row.macs * nonzero(module.weight.data) // module.weight.data.size
    return int(total)


def step_times_ms(make_model, images, labels, device, repeats=5):
    """Median milliseconds of a training step and of an inference step of a fresh ``make_model()``."""
    model = make_model()
    optimizer = optim.SGD(model.parameters(), lr=0.0, momentum=0.9)  # lr 0: the same work, no drift
    x = minires.tensor(images, device=device)
    train, infer = [], []
    for repeat in range(repeats + 1):  # the first of each is a warm-up
        model.train()
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        float(loss.item())  # waits for a GPU
        train.append(time.perf_counter() - start)
        model.eval()
        start = time.perf_counter()
        with minires.no_grad():
            float(model(x).data.sum())
        infer.append(time.perf_counter() - start)
    return 1000 * statistics.median(train[1:]), 1000 * statistics.median(infer[1:])


def measure(model, test_loader, num_classes, device="cpu", timing_batch=None, make_model=None):
    """One row of prune.json for ``model`` (see the module docstring). ``make_model()`` builds an
    empty model of the same architecture; ``timing_batch`` is an (images, labels) batch to time on
    (None: no times)."""
    image_shape = (1,) + tuple(test_loader.dataset.images.shape[1:])
    table = summary(model, image_shape, device)
    row = {"params": sum(p.numel() for p in model.parameters()), "nonzero_params": nonzero_parameters(model),
           "macs": int(table.total_macs), "nonzero_macs": nonzero_macs(model, table)}
    if timing_batch is not None and make_model is not None:
        def copy():
            fresh = make_model()
            state = model.state_dict()
            prepare_to_load(fresh, state)
            fresh.load_state_dict(state)
            return fresh.to(device)

        row["train_step_ms"], row["inference_step_ms"] = (round(t, 2) for t in step_times_ms(copy, *timing_batch, device))
    _, accuracy, _ = evaluate(model, test_loader, num_classes, device)
    row["accuracy"] = round(float(accuracy), 6)
    return row
