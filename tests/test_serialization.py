"""minires.save / minires.load: PyTorch's torch.save / torch.load for state dicts, without pickle."""
import numpy as np
import pytest

import minires
from minires.models import cifar_resnet


def test_a_saved_state_dict_loads_into_a_new_model_that_then_computes_the_same(tmp_path):
    minires.manual_seed(0)
    model = cifar_resnet(8, width=4).eval()
    path = tmp_path / "model.npz"
    minires.save(model.state_dict(), path)
    state = minires.load(path)
    assert sorted(state) == sorted(model.state_dict())
    with np.load(path, allow_pickle=False) as npz:  # plain arrays and JSON: nothing to unpickle
        assert "__tree__.json" in npz.files
    minires.manual_seed(1)
    other = cifar_resnet(8, width=4).eval()
    x = minires.tensor(np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32))
    assert not np.allclose(other(x).numpy(), model(x).numpy())
    other.load_state_dict(state)
    np.testing.assert_array_equal(other(x).numpy(), model(x).numpy())


def test_tensors_numbers_and_nesting_round_trip(tmp_path):
    weights = minires.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    obj = {"w": weights, "step": 3, "lr": 0.1, "name": "run", "groups": [{"ids": [0, 1]}], "none": None}
    minires.save(obj, tmp_path / "state.npz")
    loaded = minires.load(tmp_path / "state.npz")
    np.testing.assert_array_equal(loaded["w"], weights.data)
    assert {k: v for k, v in loaded.items() if k != "w"} == {k: v for k, v in obj.items() if k != "w"}


def test_saving_a_whole_model_says_to_save_its_state_dict(tmp_path):
    with pytest.raises(TypeError, match=r"save model.state_dict\(\)"):
        minires.save(cifar_resnet(8, width=4), tmp_path / "model.npz")
    assert not any(tmp_path.iterdir())  # nothing half-written left behind
