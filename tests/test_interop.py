"""minires.interop: safetensors files (round trips bit for bit, atomic saves, clear errors on bad files) and
torchvision's names (against PyTorch ResNets with the same weights, if torch imports)."""
import json
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

safetensors = pytest.importorskip("safetensors")  # the optional extra minires[interop]
from safetensors import safe_open

import minires
from minires.backends import cuda_status
from minires.interop import from_torchvision, load_safetensors, save_safetensors, to_torchvision
from minires.models import (
    PreActResNet, highway_net, mnist_resnet, plain_net, resnet18, resnet20, resnet32, se_resnet20, spp_resnet20,
)
from test_imagenet_resnet import randomise_batch_norms, torch_resnet  # the torch.nn ResNet-18 (or torchvision's)


def randomised_state(model, seed=0):
    """``model``'s state dict with every entry random (so a swapped or rounded value shows), BN counts too."""
    rng = np.random.default_rng(seed)
    state = model.state_dict()
    for name, value in state.items():
        if value.dtype.kind == "f":
            state[name] = rng.standard_normal(value.shape).astype(value.dtype)
        else:
            state[name] = rng.integers(1, 10**6, value.shape).astype(value.dtype)
    return state


def assert_identical(loaded, saved):
    """Same names, dtypes, shapes and bytes."""
    assert sorted(loaded) == sorted(saved)
    for name, value in saved.items():
        value = np.asarray(value)
        assert loaded[name].dtype == value.dtype, name
        assert loaded[name].shape == value.shape, name
        assert loaded[name].tobytes() == np.ascontiguousarray(value).tobytes(), name


def files_in(folder):
    return sorted(os.listdir(folder))


# ---- round trips -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_resnet20_state_dict_round_trips_bit_for_bit(tmp_path, dtype):
    model = resnet20()
    if dtype == np.float64:
        model.double()
    state = randomised_state(model)
    path = tmp_path / "resnet20.safetensors"
    save_safetensors(state, path)
    loaded = load_safetensors(path)
    assert_identical(loaded, state)
    assert list(loaded) == sorted(state)  # the documented order: sorted by name
    count = loaded["blocks.0.bn1.num_batches_tracked"]
    assert count.shape == () and count.dtype == np.int64 and count == state["blocks.0.bn1.num_batches_tracked"]
    assert loaded["stem.0.weight"].dtype == dtype
    model.load_state_dict(loaded)  # strict: every key, every shape


def test_tensors_strided_arrays_and_special_values_are_saved_as_their_values(tmp_path):
    grid = np.arange(24, dtype=np.float32).reshape(4, 6)
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 5e-324, 1.0], dtype=np.float64)  # 5e-324: subnormal
    state = {
        "tensor": minires.tensor(grid),
        "parameter": minires.nn.Parameter(grid[:2]),
        "transposed": grid.T,  # not C-contiguous: safetensors copies raw memory, so it must be made so
        "every_other": grid[:, ::2],
        "special": special,
        "scalar": np.float32(2.5),  # a NumPy scalar: a 0-d array
        "flags": np.array([True, False]),
        "half": np.array([1.5, -2.0], dtype=np.float16),
    }
    path = tmp_path / "mixed.safetensors"
    save_safetensors(state, path)
    loaded = load_safetensors(path)
    expected = {name: np.asarray(value.data if isinstance(value, minires.Tensor) else value)
                for name, value in state.items()}
    assert_identical(loaded, expected)
    assert loaded["scalar"].shape == ()
    np.testing.assert_array_equal(loaded["transposed"], grid.T)


def test_the_file_is_safetensors_as_the_format_defines_it(tmp_path):
    """Read independently: by safetensors' own safe_open, and the header by hand (length, JSON, offsets)."""
    state = randomised_state(mnist_resnet())
    path = tmp_path / "model.safetensors"
    save_safetensors(state, path, metadata={"model": "mnist_resnet", "epochs": "3"})
    with safe_open(str(path), framework="numpy") as f:
        assert sorted(f.keys()) == sorted(state)
        assert f.metadata() == {"model": "mnist_resnet", "epochs": "3"}
        for name in state:
            np.testing.assert_array_equal(f.get_tensor(name), state[name], err_msg=name)
    raw = path.read_bytes()
    (header_length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_length])
    assert header.pop("__metadata__") == {"model": "mnist_resnet", "epochs": "3"}
    count = header["stem.1.num_batches_tracked"]
    assert count["dtype"] == "I64" and count["shape"] == []  # a 0-d array: shape ()
    weight = header["stem.0.weight"]
    assert weight["dtype"] == "F32" and weight["shape"] == list(state["stem.0.weight"].shape)
    start, end = (8 + header_length + offset for offset in weight["data_offsets"])
    assert raw[start:end] == state["stem.0.weight"].astype("<f4").tobytes()


# ---- atomic saves ---------------------------------------------------------------------------------------------

def test_a_save_leaves_only_its_file_and_removes_abandoned_temporaries(tmp_path):
    abandoned = tmp_path / ".checkpoint-killed.npz.tmp"  # what a save killed before its rename leaves (unlocked)
    abandoned.write_bytes(b"half a file")
    save_safetensors({"w": np.ones(3)}, tmp_path / "model.safetensors")
    assert files_in(tmp_path) == ["model.safetensors"]


def test_a_failing_save_leaves_the_existing_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    save_safetensors({"w": np.arange(4.0)}, path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="'bad' is an object array"):
        save_safetensors({"w": np.zeros(4), "bad": np.array([None, 1], dtype=object)}, path)
    assert path.read_bytes() == before and files_in(tmp_path) == ["model.safetensors"]

    def failing_replace(source, destination):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", failing_replace)  # the write got as far as the rename
    with pytest.raises(OSError, match="No space left"):
        save_safetensors({"w": np.zeros(4)}, path)
    assert path.read_bytes() == before and files_in(tmp_path) == ["model.safetensors"]


@pytest.mark.parametrize("state, error, message", [
    ({"stem": {"weight": np.ones(2)}}, TypeError, r"entry 'stem' is a nested dict.*flat dict"),
    ({"lr": 0.1}, TypeError, r"entry 'lr' is a float, not an array"),
    ({"shape": [1, 2]}, TypeError, r"entry 'shape' is a list, not an array"),
    ({"names": np.array(["a", "b"])}, TypeError, r"entry 'names' is of dtype <U1, which safetensors cannot hold"),
    ({3: np.ones(2)}, TypeError, r"key 3 is a int; safetensors names every array with a str"),
    ({"__metadata__": np.ones(2)}, ValueError, r"'__metadata__' is reserved"),
    ([np.ones(2)], TypeError, r"saves a dict name -> array .* got list"),
])
def test_what_safetensors_cannot_hold_is_refused_naming_the_key(tmp_path, state, error, message):
    with pytest.raises(error, match=message):
        save_safetensors(state, tmp_path / "x.safetensors")
    assert files_in(tmp_path) == []


def test_bad_metadata_and_a_folder_as_the_path_are_refused(tmp_path):
    with pytest.raises(TypeError, match=r"metadata entry 'epochs': 3 is not str -> str"):
        save_safetensors({"w": np.ones(2)}, tmp_path / "x.safetensors", metadata={"epochs": 3})
    with pytest.raises(ValueError, match=r"it is a folder; give a file name"):
        save_safetensors({"w": np.ones(2)}, tmp_path)
    assert files_in(tmp_path) == []


# ---- bad files ---------------------------------------------------------------------------------------------------

def bad_file(tmp_path, kind):
    path = tmp_path / f"{kind}.safetensors"
    if kind == "npz":
        path = tmp_path / "model.npz"
        minires.save(resnet20().state_dict(), path)
    elif kind == "pickle":
        path.write_bytes(b"\x80\x02}q\x00.")  # what pickle.dumps({}, protocol=2) writes
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(300))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind in ("truncated_data", "truncated_header"):
        save_safetensors({"w": np.arange(100.0)}, path)
        raw = path.read_bytes()
        path.write_bytes(raw[:-8] if kind == "truncated_data" else raw[:20])
    return path


@pytest.mark.parametrize("kind, message", [
    ("npz", r"is not a safetensors file.*zip archive: a minires \.npz \(read it with minires\.load\)"),
    ("pickle", r"is not a safetensors file.*starts like a pickle.*never loads"),
    ("random", r"is not a safetensors file, or it is damaged"),
    ("empty", r"is an empty file, not a safetensors file"),
    ("truncated_data", r"is not a safetensors file, or it is damaged"),
    ("truncated_header", r"is not a safetensors file, or it is damaged"),
])
def test_a_file_that_is_not_safetensors_raises_a_value_error_naming_it(tmp_path, kind, message):
    path = bad_file(tmp_path, kind)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + message) as caught:
        load_safetensors(path)
    assert "\n" not in str(caught.value)


def test_a_missing_file_and_a_folder_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nothing.safetensors")) + " does not exist"):
        load_safetensors(tmp_path / "nothing.safetensors")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path)) + " is a folder, not a safetensors file"):
        load_safetensors(tmp_path)


def test_without_safetensors_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)  # ``import safetensors`` now fails
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    for call in (lambda: save_safetensors({"w": np.ones(2)}, tmp_path / "x.safetensors"),
                 lambda: load_safetensors(tmp_path / "x.safetensors")):
        with pytest.raises(ImportError, match=re.escape('pip install "minires[interop]"')):
            call()
    assert files_in(tmp_path) == []


def test_importing_minires_interop_does_not_need_safetensors():
    code = ("import sys; sys.modules['safetensors'] = None; import minires, minires.interop; "
            "m = minires.models.resnet20(); print(len(minires.interop.to_torchvision(m.state_dict(), m)))")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(resnet20().state_dict()))


# ---- torchvision's names ------------------------------------------------------------------------------------------

def test_cifar_names_become_torchvisions_block_by_block():
    model = resnet32(shortcut="B")  # 5 blocks per stage; projections in blocks 5 and 10
    state = model.state_dict()
    theirs = to_torchvision(state, model)
    assert len(theirs) == len(state)
    for ours, expected in [("stem.0.weight", "conv1.weight"),
                           ("stem.1.num_batches_tracked", "bn1.num_batches_tracked"),
                           ("blocks.0.conv1.weight", "layer1.0.conv1.weight"),
                           ("blocks.4.bn2.bias", "layer1.4.bn2.bias"),
                           ("blocks.5.conv1.weight", "layer2.0.conv1.weight"),
                           ("blocks.5.shortcut.0.weight", "layer2.0.downsample.0.weight"),
                           ("blocks.10.shortcut.1.running_var", "layer3.0.downsample.1.running_var"),
                           ("blocks.14.bn2.running_mean", "layer3.4.bn2.running_mean"),
                           ("head.1.weight", "fc.weight"), ("head.1.bias", "fc.bias")]:
        assert theirs[expected] is state[ours], (ours, expected)  # renamed, not copied
    assert {name.split(".")[0] for name in theirs} == {"conv1", "bn1", "layer1", "layer2", "layer3", "fc"}
    assert {tuple(name.split(".")[:2]) for name in theirs if name.startswith("layer")} == {
        (f"layer{s}", str(j)) for s in (1, 2, 3) for j in range(5)}
    back = from_torchvision(theirs, model)
    assert list(back) == list(state) and all(back[name] is state[name] for name in state)


@pytest.mark.parametrize("make, expected", [
    (lambda: se_resnet20(), {"blocks.0.se.fc1.weight": "layer1.0.se.fc1.weight",
                             "blocks.8.se.fc2.bias": "layer3.2.se.fc2.bias"}),
    (lambda: mnist_resnet(), {"blocks.1.conv2.weight": "layer2.0.conv2.weight",
                              "blocks.2.bn1.bias": "layer3.0.bn1.bias"}),  # 1 block per stage
    (lambda: plain_net(20), {"blocks.3.conv1.weight": "layer2.0.conv1.weight"}),
])
def test_se_mnist_and_plain_cifar_nets_are_mapped_too(make, expected):
    model = make()
    theirs = to_torchvision(model.state_dict(), model)
    for ours, name in expected.items():
        assert name in theirs and ours not in theirs
    assert not any(name.startswith(("stem.", "blocks.", "head.")) for name in theirs)
    model.load_state_dict(from_torchvision(theirs, model))


def test_imagenet_names_stay_and_a_data_parallel_prefix_goes():
    model = resnet18(num_classes=10)
    state = model.state_dict()
    assert list(to_torchvision(state, model)) == list(state)
    wrapped = {f"module.{name}": value for name, value in state.items()}  # as nn.DataParallel saves it
    assert list(from_torchvision(wrapped, model)) == list(state)
    cifar = resnet20()
    wrapped = {f"module.{name}": value for name, value in to_torchvision(cifar.state_dict(), cifar).items()}
    assert list(from_torchvision(wrapped, cifar)) == list(cifar.state_dict())


@pytest.mark.parametrize("make", [lambda: PreActResNet(20), lambda: highway_net(8), lambda: spp_resnet20(),
                                  lambda: resnet20])  # the last: the builder, not a model
def test_models_without_a_torchvision_naming_are_refused(make):
    model = make()
    with pytest.raises(ValueError, match=r"torchvision has no names|no torchvision naming is defined") as caught:
        to_torchvision({}, model)
    assert "CifarResNet" in str(caught.value) or "SppResNet" in str(caught.value)
    with pytest.raises(ValueError):
        from_torchvision({}, model)


def test_names_without_a_counterpart_stay_for_load_state_dict_to_report():
    model = resnet20()  # 3 blocks per stage
    theirs = to_torchvision(model.state_dict(), model)
    theirs["layer1.3.conv1.weight"] = theirs["layer1.2.conv1.weight"]  # a ResNet-32's block
    theirs["layer4.0.conv1.weight"] = theirs["layer1.2.conv1.weight"]  # an ImageNet ResNet's stage
    del theirs["layer2.0.conv1.weight"]
    ours = from_torchvision(theirs, model)
    assert "layer1.3.conv1.weight" in ours and "layer4.0.conv1.weight" in ours
    with pytest.raises(RuntimeError, match=r"missing keys: blocks\.3\.conv1\.weight\n"
                                           r"  unexpected keys: layer1\.3\.conv1\.weight, layer4\.0\.conv1\.weight"):
        model.load_state_dict(ours)
    with pytest.raises(ValueError, match=r"two keys become 'conv1\.weight'"):
        to_torchvision({"stem.0.weight": np.ones(1), "conv1.weight": np.ones(1)}, model)
    with pytest.raises(TypeError, match="renames a state dict"):
        from_torchvision([("conv1.weight", np.ones(1))], model)


def test_a_wrong_shape_and_a_missing_key_in_a_file_are_named(tmp_path):
    path = tmp_path / "resnet18_1000.safetensors"
    big = resnet18()  # 1000 classes
    save_safetensors(big.state_dict(), path)
    state = from_torchvision(load_safetensors(path), big)
    small = resnet18(num_classes=10)
    with pytest.raises(RuntimeError, match=r"wrongly shaped keys: fc\.weight: checkpoint \(1000, 512\) vs model "
                                           r"\(10, 512\); fc\.bias: checkpoint \(1000,\) vs model \(10,\)"):
        small.load_state_dict(state)
    del state["layer1.0.conv1.weight"]
    with pytest.raises(RuntimeError, match=r"missing keys: layer1\.0\.conv1\.weight"):
        big.load_state_dict(state)


# ---- against PyTorch ----------------------------------------------------------------------------------------------

def torch_cifar_resnet(torch, depth=20, shortcut="A", num_classes=10):
    """A CIFAR ResNet in torch.nn, in torchvision's style (conv1, bn1, layer1..3, fc). Option A: subsample
    by the stride and append zero channels after the input's (minires/ops/shortcut.py); option B: downsample."""
    tnn = torch.nn

    class Block(tnn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.stride, self.new_channels = stride, cout - cin
            changes_shape = stride != 1 or cin != cout
            self.downsample = None
            if shortcut == "B" and changes_shape:
                self.downsample = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

        def forward(self, x):
            out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            if self.downsample is not None:
                short = self.downsample(x)
            else:  # option A (the identity where nothing changes)
                short = tnn.functional.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.new_channels))
            return torch.relu(out + short)

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            n = (depth - 2) // 6
            self.conv1 = tnn.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(16)
            cin = 16
            for stage, width in enumerate((16, 32, 64)):
                blocks = []
                for j in range(n):
                    blocks.append(Block(cin, width, 2 if stage > 0 and j == 0 else 1))
                    cin = width
                setattr(self, f"layer{stage + 1}", tnn.Sequential(*blocks))
            self.fc = tnn.Linear(64, num_classes)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(x.mean(dim=(2, 3)))

    return Net()


def torch_logits(torch, model, x):
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def minires_logits(model, x):
    model.eval()
    with minires.no_grad():
        return model(minires.tensor(x)).numpy()


def assert_same_logits(actual, expected):
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_a_pytorch_resnet18_file_loads_into_minires_resnet18(torch, tmp_path):
    import safetensors.torch
    torch.manual_seed(0)
    theirs = torch_resnet(torch, "resnet18")
    randomise_batch_norms(torch, theirs)
    path = tmp_path / "resnet18.safetensors"  # made as a downloaded file is, from a DataParallel model here
    safetensors.torch.save_file({f"module.{k}": v for k, v in theirs.state_dict().items()}, str(path))
    ours = resnet18()
    ours.load_state_dict(from_torchvision(load_safetensors(path), ours))  # strict
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    assert_same_logits(minires_logits(ours, x), torch_logits(torch, theirs, x))


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_a_pytorch_cifar_resnet20_trades_weights_with_minires_both_ways(torch, tmp_path, shortcut):
    import safetensors.torch
    torch.manual_seed(0)
    theirs = torch_cifar_resnet(torch, 20, shortcut)
    randomise_batch_norms(torch, theirs)
    ours = resnet20(shortcut=shortcut)
    assert list(to_torchvision(ours.state_dict(), ours)) == list(theirs.state_dict())  # same names, same order
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)

    path = tmp_path / "theirs.safetensors"  # PyTorch -> minires
    safetensors.torch.save_file(theirs.state_dict(), str(path))
    ours.load_state_dict(from_torchvision(load_safetensors(path), ours))
    assert_same_logits(minires_logits(ours, x), torch_logits(torch, theirs, x))

    mine = resnet20(shortcut=shortcut)  # minires -> PyTorch: new weights, randomised BNs included
    mine.load_state_dict({k: np.abs(v) + 0.5 if "running_var" in k else v
                          for k, v in randomised_state(mine, seed=2).items()})
    mine_state = to_torchvision(mine.state_dict(), mine)
    fresh = torch_cifar_resnet(torch, 20, shortcut)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in mine_state.items()}, strict=True)
    expected = minires_logits(mine, x)
    assert_same_logits(torch_logits(torch, fresh, x), expected)
    path = tmp_path / "mine.safetensors"  # and through a file, read by PyTorch's own loader
    save_safetensors(mine_state, path)
    fresh = torch_cifar_resnet(torch, 20, shortcut)
    fresh.load_state_dict(safetensors.torch.load_file(str(path)), strict=True)
    assert_same_logits(torch_logits(torch, fresh, x), expected)


def test_a_bfloat16_file_is_refused_naming_the_array(torch, tmp_path):
    import safetensors.torch
    path = tmp_path / "half.safetensors"
    safetensors.torch.save_file({"fc.weight": torch.ones(2, 2, dtype=torch.bfloat16)}, str(path))
    with pytest.raises(ValueError, match=re.escape(str(path)) + r": array 'fc\.weight' has dtype BF16, which NumPy "
                                                                r"cannot hold"):
        load_safetensors(path)


# ---- on a GPU ----------------------------------------------------------------------------------------------------

@pytest.mark.gpu
def test_tensors_and_cupy_arrays_on_the_gpu_are_saved_from_the_host(tmp_path):
    usable, reason = cuda_status()
    if not usable:
        pytest.skip(f"no usable GPU: {reason}")
    model = mnist_resnet().to("cuda")
    expected = model.state_dict()  # copied to the host
    on_gpu = dict(model.named_tensors())
    state = {**{name: t for name, t in on_gpu.items() if "conv" in name},
             **{name: t.data for name, t in on_gpu.items() if "conv" not in name}}  # Tensors and CuPy arrays
    save_safetensors(state, tmp_path / "gpu.safetensors")
    assert_identical(load_safetensors(tmp_path / "gpu.safetensors"), expected)
