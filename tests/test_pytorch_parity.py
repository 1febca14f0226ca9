"""One training script, written once against a namespace ``lib`` (torch or minires), gives the
same losses under both: the habits a student forms here carry over to PyTorch unchanged.

The script uses what a first PyTorch tutorial uses: tensors, a small residual CNN with batch
norm, ``nn.CrossEntropyLoss``, SGD with two parameter groups and a scheduler, ``float(loss)``,
``argmax`` and an accuracy, plus a hook that records gradient norms, ``.grad`` used as a tensor and
a last update written by hand (``p.data -= lr * p.grad``). Both run in float64 from
the same initial weights (copied from minires's model into torch's). Skips without PyTorch.
"""
import types

import numpy as np
import pytest

import minires

torch = pytest.importorskip("torch")

STEPS = 5


def namespace(lib_name):
    if lib_name == "torch":
        return types.SimpleNamespace(name="torch", tensor=torch.tensor, nn=torch.nn, optim=torch.optim,
                                     float64=torch.float64, no_grad=torch.no_grad)
    return types.SimpleNamespace(name="minires", tensor=minires.tensor, nn=minires.nn, optim=minires.optim,
                                 float64=np.float64, no_grad=minires.no_grad)


def build_model(lib):
    nn = lib.nn

    class Block(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(channels)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(channels)

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
            self.block = Block(4)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            x = self.block(self.stem(x))
            return self.fc(self.pool(x).flatten(1))

    return Net()


def train(lib, state, images, labels):
    """The script, as a student would write it for PyTorch."""
    model = build_model(lib).double()
    model.load_state_dict({k: lib.tensor(v) for k, v in state.items()})
    criterion = lib.nn.CrossEntropyLoss()
    decay = [p for name, p in model.named_parameters() if name.endswith("weight") and "bn" not in name]
    no_decay = [p for name, p in model.named_parameters() if not (name.endswith("weight") and "bn" not in name)]
    optimizer = lib.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "lr": 0.05}],
                              lr=0.1, momentum=0.9)
    scheduler = lib.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    norms = []
    model.fc.weight.register_hook(lambda g: norms.append(float((g * g).sum()) ** 0.5))
    x, y = lib.tensor(images), lib.tensor(labels)
    losses, accuracies, grad_sums = [], [], []
    for _ in range(STEPS):
        model.train()
        logits = model(x)
        loss = criterion(logits, y)
        optimizer.zero_grad()
        loss.backward()
        grad_sums.append(float(model.fc.weight.grad.abs().sum()))
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        accuracies.append(float((logits.argmax(1) == y).sum()) / len(labels))
    for p in model.fc.parameters():  # one more update of the last layer, by hand
        p.data -= 0.01 * p.grad
    model.eval()
    with lib.no_grad():
        eval_loss = float(criterion(model(x), y))
        per_sample = lib.nn.CrossEntropyLoss(reduction="none")(model(x), y).tolist()
    return losses, accuracies, norms, grad_sums, eval_loss, per_sample, [g["lr"] for g in optimizer.param_groups]


def test_one_training_script_gives_the_same_numbers_under_torch_and_minires():
    minires.manual_seed(0)
    reference = build_model(namespace("minires"))
    state = {name: value.astype(np.float64) for name, value in reference.state_dict().items()}
    rng = np.random.default_rng(0)
    images, labels = rng.standard_normal((6, 3, 8, 8)), rng.integers(0, 3, size=6)
    ours = train(namespace("minires"), state, images, labels)
    theirs = train(namespace("torch"), state, images, labels)
    names = ("losses", "accuracies", "gradient norms", "sum |grad|", "eval loss", "per-sample losses", "final lrs")
    for name, a, b in zip(names, ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=name)
    assert len(ours[2]) == STEPS and ours[0][0] != ours[0][-1]  # it trained, and the hook ran each step
