"""Tensor factories (minires/factories.py): shapes, dtypes, values, devices, requires_grad,
the seeded random ones, the errors, and agreement with PyTorch's shapes and dtypes."""
import numpy as np
import pytest

import minires
from minires import Tensor

SIZED = [minires.zeros, minires.ones, minires.randn, minires.rand]  # the *size factories
LIKE = [minires.zeros_like, minires.ones_like, minires.randn_like, minires.rand_like]


# ---- shapes: the *size forms ---------------------------------------------------------------

@pytest.mark.parametrize("factory", SIZED, ids=lambda f: f.__name__)
@pytest.mark.parametrize("args, shape", [
    ((2, 3), (2, 3)), (((2, 3),), (2, 3)), (([2, 3],), (2, 3)), ((4,), (4,)),
    (((),), ()), (([],), ()), ((0, 5), (0, 5)), ((np.int64(2), 1), (2, 1)),
])
def test_size_as_ints_or_one_tuple_or_list(factory, args, shape):
    t = factory(*args)
    assert isinstance(t, Tensor)
    assert t.shape == shape
    assert t.dtype == np.float32
    assert t.device == "cpu"
    assert t.requires_grad is False and t.grad_fn is None


def test_full_and_eye_and_arange_shapes():
    assert minires.full((2, 3), 7.0).shape == (2, 3)
    assert minires.full([4], 7.0).shape == (4,)
    assert minires.full((), 7.0).shape == ()
    assert minires.eye(3).shape == (3, 3)
    assert minires.eye(2, 5).shape == (2, 5)
    assert minires.eye(0).shape == (0, 0)
    assert minires.arange(5).shape == (5,)
    assert minires.arange(0, 1, 0.3).shape == (4,)
    assert minires.arange(3, 3).shape == (0,)


# ---- values --------------------------------------------------------------------------------

def test_zeros_ones_full_values():
    np.testing.assert_array_equal(minires.zeros(2, 3).numpy(), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(minires.ones(2, 3).numpy(), np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(minires.full((2, 2), 2.5).numpy(), np.full((2, 2), 2.5, np.float32))
    np.testing.assert_array_equal(minires.full((3,), -4).numpy(), np.array([-4, -4, -4], np.int64))
    np.testing.assert_array_equal(minires.full((2,), True).numpy(), np.array([True, True]))


def test_full_with_a_dtype_casts_the_value():
    t = minires.full((2,), 1.5, dtype=np.int64)
    assert t.dtype == np.int64
    np.testing.assert_array_equal(t.numpy(), [1, 1])
    assert minires.full((2,), 3, dtype="float64").dtype == np.float64


def test_eye_values():
    np.testing.assert_array_equal(minires.eye(3).numpy(), np.eye(3, dtype=np.float32))
    np.testing.assert_array_equal(minires.eye(2, 4).numpy(), np.eye(2, 4, dtype=np.float32))
    np.testing.assert_array_equal(minires.eye(4, 2, dtype="int64").numpy(), np.eye(4, 2, dtype=np.int64))


@pytest.mark.parametrize("args, expected", [
    ((5,), np.arange(5, dtype=np.int64)),
    ((2, 7), np.arange(2, 7, dtype=np.int64)),
    ((10, 0, -3), np.array([10, 7, 4, 1], np.int64)),
    ((5.0,), np.arange(5, dtype=np.float32)),
    ((0, 1, 0.25), np.array([0, 0.25, 0.5, 0.75], np.float32)),
    ((1, 2.5), np.array([1.0, 2.0], np.float32)),
    ((0, 1, 0.1), np.arange(0, 1, 0.1).astype(np.float32)),
])
def test_arange_values_and_dtype(args, expected):
    t = minires.arange(*args)
    assert t.dtype == expected.dtype
    np.testing.assert_array_equal(t.numpy(), expected)


def test_arange_with_an_integer_dtype_truncates_the_arguments_first():
    # As PyTorch: arange(0.5, 3, 1, dtype=int64) is arange(0, 3, 1).
    np.testing.assert_array_equal(minires.arange(0.5, 3, 1, dtype=np.int64).numpy(), [0, 1, 2])
    np.testing.assert_array_equal(minires.arange(0, 2.5, 1, dtype="int64").numpy(), [0, 1])
    with pytest.raises(ValueError, match="step must be nonzero"):
        minires.arange(0, 2.5, 0.5, dtype=np.int64)  # the step truncates to 0


def test_randn_mean_and_std():
    minires.manual_seed(1)
    x = minires.randn(100_000).numpy()
    assert x.dtype == np.float32
    assert abs(x.mean()) < 0.02
    assert abs(x.std() - 1.0) < 0.02
    # Normal, not merely spread like one: 68.3% within one std, 95.4% within two.
    assert abs(np.mean(np.abs(x) < 1) - 0.6827) < 0.01
    assert abs(np.mean(np.abs(x) < 2) - 0.9545) < 0.005
    assert len(np.unique(x)) > 99_000  # actually random, not a constant


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_rand_is_in_zero_one(dtype):
    minires.manual_seed(2)
    x = minires.rand(100_000, dtype=dtype).numpy()
    assert x.dtype == dtype
    assert x.min() >= 0.0 and x.max() < 1.0
    assert abs(x.mean() - 0.5) < 0.01
    assert abs(x.var() - 1 / 12) < 0.005


# ---- the seeded generator ------------------------------------------------------------------

@pytest.mark.parametrize("factory", [minires.randn, minires.rand], ids=lambda f: f.__name__)
def test_manual_seed_makes_random_factories_repeatable(factory):
    minires.manual_seed(0)
    a = factory(3, 4).numpy()
    b = factory(3, 4).numpy()
    minires.manual_seed(0)
    np.testing.assert_array_equal(factory(3, 4).numpy(), a)
    np.testing.assert_array_equal(factory(3, 4).numpy(), b)
    assert not np.array_equal(a, b)  # the generator moves on between calls


def test_an_explicit_generator_is_used_and_leaves_minires_generator_alone():
    minires.manual_seed(0)
    expected_next = minires.randn(3).numpy()
    minires.manual_seed(0)
    a = minires.randn(3, generator=np.random.default_rng(7)).numpy()
    np.testing.assert_array_equal(a, minires.randn(3, generator=np.random.default_rng(7)).numpy())
    np.testing.assert_array_equal(minires.randn(3).numpy(), expected_next)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        minires.rand(3, generator=0)


def test_randn_float64_is_the_float32_draw_in_more_precision():
    minires.manual_seed(3)
    single = minires.randn(5).numpy()
    minires.manual_seed(3)
    double = minires.randn(5, dtype=np.float64).numpy()
    assert double.dtype == np.float64
    np.testing.assert_array_equal(double.astype(np.float32), single)


# ---- dtypes --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, "float64", np.dtype("float64")])
def test_dtype_as_numpy_type_string_or_dtype(dtype):
    for t in (minires.zeros(2, dtype=dtype), minires.ones(2, dtype=dtype), minires.randn(2, dtype=dtype),
              minires.rand(2, dtype=dtype), minires.eye(2, dtype=dtype), minires.arange(3, dtype=dtype),
              minires.full((2,), 1, dtype=dtype)):
        assert t.dtype == np.float64


def test_integer_and_bool_dtypes():
    assert minires.zeros(2, dtype=np.int64).dtype == np.int64
    assert minires.ones(2, dtype="uint8").dtype == np.uint8
    np.testing.assert_array_equal(minires.ones(2, dtype=bool).numpy(), [True, True])
    assert minires.eye(2, dtype=bool).dtype == np.bool_


def test_default_dtype_is_the_projects():
    from minires.engine.tensor import DEFAULT_DTYPE
    for t in (minires.zeros(1), minires.ones(1), minires.randn(1), minires.rand(1), minires.eye(1),
              minires.full((1,), 1.0), minires.arange(1.0)):
        assert t.dtype == DEFAULT_DTYPE


# ---- requires_grad -------------------------------------------------------------------------

def test_requires_grad_makes_a_leaf_that_collects_gradients():
    for t in (minires.zeros(3, requires_grad=True), minires.ones(3, requires_grad=True),
              minires.randn(3, requires_grad=True), minires.rand(3, requires_grad=True),
              minires.full((3,), 2.0, requires_grad=True), minires.arange(0.0, 3, requires_grad=True),
              minires.eye(3, 1, requires_grad=True)):
        assert t.requires_grad and t.is_leaf and t.grad_fn is None
        (t * 2.0).sum().backward()
        np.testing.assert_array_equal(t.grad, np.full(t.shape, 2.0, np.float32))


@pytest.mark.parametrize("make", [
    lambda: minires.zeros(2, dtype=np.int64, requires_grad=True),
    lambda: minires.ones(2, dtype=bool, requires_grad=True),
    lambda: minires.full((2,), 3, requires_grad=True),  # int64 from the fill value
    lambda: minires.arange(3, requires_grad=True),      # int64 from the int arguments
    lambda: minires.eye(2, dtype="int32", requires_grad=True),
    lambda: minires.zeros_like(minires.tensor([1, 2]), requires_grad=True),
])
def test_requires_grad_on_an_integer_dtype_is_refused(make):
    with pytest.raises(TypeError, match="only floating-point tensors can require grad"):
        make()


# ---- *_like --------------------------------------------------------------------------------

@pytest.mark.parametrize("factory", LIKE, ids=lambda f: f.__name__)
def test_like_takes_shape_dtype_and_device_from_the_input(factory):
    t = minires.tensor(np.ones((2, 3), np.float64))
    y = factory(t)
    assert (y.shape, y.dtype, y.device) == ((2, 3), np.float64, "cpu")
    assert y.requires_grad is False
    assert factory(t, dtype="float32").dtype == np.float32
    assert factory(t, device="cpu").device == "cpu"
    assert factory(t, requires_grad=True).requires_grad


def test_like_values():
    t = minires.tensor([[1, 2], [3, 4]])  # int64
    np.testing.assert_array_equal(minires.zeros_like(t).numpy(), np.zeros((2, 2), np.int64))
    np.testing.assert_array_equal(minires.ones_like(t).numpy(), np.ones((2, 2), np.int64))
    full = minires.full_like(t, 2.5)  # the input's dtype wins over the fill value's, as in PyTorch
    assert full.dtype == np.int64
    np.testing.assert_array_equal(full.numpy(), np.full((2, 2), 2))
    assert minires.full_like(minires.zeros(2), True).dtype == np.float32


def test_like_does_not_copy_requires_grad():
    t = minires.randn(3, requires_grad=True)
    for factory in LIKE:
        assert not factory(t).requires_grad
    assert not minires.full_like(t, 1.0).requires_grad


def test_random_like_are_seeded_and_need_floats():
    t = minires.zeros(4, 5)
    minires.manual_seed(0)
    a = minires.randn_like(t).numpy()
    minires.manual_seed(0)
    np.testing.assert_array_equal(a, minires.randn(4, 5).numpy())
    with pytest.raises(TypeError, match="floating-point dtype"):
        minires.randn_like(minires.tensor([1, 2]))
    with pytest.raises(TypeError, match="floating-point dtype"):
        minires.rand_like(minires.tensor([True]))


@pytest.mark.parametrize("factory", LIKE + [lambda x: minires.full_like(x, 1.0)], ids=str)
def test_like_refuses_what_is_not_a_tensor(factory):
    with pytest.raises(TypeError, match="not a minires Tensor"):
        factory(np.zeros(3))


# ---- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: minires.zeros(2, -1), lambda: minires.ones((-3,)), lambda: minires.randn([2, -2]),
    lambda: minires.rand(-1), lambda: minires.full((-1, 2), 0.0),
])
def test_negative_size_is_a_value_error_naming_size(make):
    with pytest.raises(ValueError, match=r"size cannot have a negative dimension, got -\d"):
        make()


@pytest.mark.parametrize("make", [
    lambda: minires.zeros(2.0), lambda: minires.ones(True), lambda: minires.randn((2, 3.0)),
    lambda: minires.zeros((2,), 3), lambda: minires.rand(2, [3]), lambda: minires.full(3, 1.0),
])
def test_size_that_is_not_ints_is_a_type_error(make):
    with pytest.raises(TypeError, match="size"):
        make()


@pytest.mark.parametrize("factory", SIZED, ids=lambda f: f.__name__)
def test_no_size_at_all_is_a_type_error(factory):
    with pytest.raises(TypeError, match="size is missing"):
        factory()


def test_eye_errors_name_the_argument():
    with pytest.raises(ValueError, match="n must be greater or equal to 0, got -1"):
        minires.eye(-1)
    with pytest.raises(ValueError, match="m must be greater or equal to 0, got -2"):
        minires.eye(2, -2)
    with pytest.raises(TypeError, match="n must be an int"):
        minires.eye(2.0)


def test_arange_errors():
    with pytest.raises(ValueError, match="step must be nonzero"):
        minires.arange(0, 1, 0)
    with pytest.raises(ValueError, match="inconsistent with the sign of step"):
        minires.arange(0, 5, -1)
    with pytest.raises(ValueError, match="inconsistent with the sign of step"):
        minires.arange(1.0, 0.0)
    with pytest.raises(ValueError, match="end must be finite"):
        minires.arange(float("inf"))
    with pytest.raises(TypeError, match="start must be a number"):
        minires.arange("0", 3)
    with pytest.raises(TypeError, match="bool"):
        minires.arange(2, dtype=bool)


def test_random_factories_need_a_floating_dtype():
    with pytest.raises(TypeError, match="floating-point dtype, got int64"):
        minires.randn(3, dtype=np.int64)
    with pytest.raises(TypeError, match="floating-point dtype, got bool"):
        minires.rand(3, dtype=bool)


def test_bad_dtype_and_fill_value():
    with pytest.raises(TypeError, match="NumPy dtype or its name"):
        minires.zeros(2, dtype=object())
    with pytest.raises(TypeError, match="not complex64"):
        minires.ones(2, dtype=np.complex64)
    with pytest.raises(TypeError, match="fill_value must be a bool, an int or a float"):
        minires.full((2,), 1 + 2j)
    with pytest.raises(TypeError, match="fill_value"):
        minires.full((2,), "7")


@pytest.mark.parametrize("make", [
    lambda d: minires.zeros(2, device=d), lambda d: minires.randn(2, device=d),
    lambda d: minires.arange(3, device=d), lambda d: minires.eye(2, device=d),
    lambda d: minires.full((2,), 1.0, device=d), lambda d: minires.ones_like(minires.zeros(1), device=d),
])
def test_unknown_device_is_refused(make):
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        make("gpu")


def test_device_spellings_for_the_cpu():
    assert minires.zeros(1, device="CPU").device == "cpu"
    assert minires.zeros(1, device=None).device == "cpu"  # None: the default device, as in PyTorch


@pytest.mark.skipif(minires.cuda_is_available(), reason="a usable GPU is present; the error path cannot happen")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_gpu_explains_why(device):
    _, reason = minires.backends.cuda_status()
    for make in (minires.zeros, minires.randn):
        with pytest.raises(RuntimeError, match="cannot move data to cuda") as info:
            make(2, device=device)
        assert reason in str(info.value)


@pytest.mark.gpu
def test_factories_on_the_gpu():
    x = minires.randn(2, 3, device="cuda")
    assert x.device == "cuda:0" and x.shape == (2, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(minires.eye(3, device="cuda").numpy(), np.eye(3, dtype=np.float32))
    assert minires.zeros_like(x).device == "cuda:0"
    minires.manual_seed(0)
    a = minires.rand(4, device="cuda").numpy()
    minires.manual_seed(0)
    np.testing.assert_array_equal(a, minires.rand(4).numpy())  # one generator for every device


# ---- the same shapes and dtypes as PyTorch -------------------------------------------------

# (factory name, positional args, keyword args); dtypes are spelt by name, turned into each library's own.
TORCH_CASES = [
    ("zeros", (2, 3), {}), ("zeros", ((2, 3),), {}), ("zeros", ([],), {}), ("zeros", (4,), {"dtype": "int64"}),
    ("ones", (3,), {}), ("ones", ([2, 1],), {"dtype": "float64"}), ("ones", (2,), {"dtype": "bool"}),
    ("randn", (2, 3), {}), ("randn", ((),), {}), ("randn", (5,), {"dtype": "float64"}),
    ("rand", (4, 1), {}), ("rand", (3,), {"dtype": "float16"}),
    ("full", ((2, 3), 1.5), {}), ("full", ((2,), 7), {}), ("full", ((2,), True), {}), ("full", ((), 2), {}),
    ("full", ([3], 1), {"dtype": "float64"}), ("full", ((2,), 1.5), {"dtype": "int32"}),
    ("arange", (5,), {}), ("arange", (5.0,), {}), ("arange", (1, 4), {}), ("arange", (0, 5, 0.5), {}),
    ("arange", (10, 0, -3), {}), ("arange", (0, 1, 0.3), {}), ("arange", (5,), {"dtype": "float64"}),
    ("arange", (0.5, 3, 1), {"dtype": "int64"}), ("arange", (2, 2), {}),
    ("eye", (3,), {}), ("eye", (2, 5), {}), ("eye", (0,), {}), ("eye", (2,), {"dtype": "bool"}),
    ("eye", (3,), {"dtype": "int64"}),
]
LIKE_CASES = [
    ("zeros_like", (), {}), ("ones_like", (), {}), ("randn_like", (), {}), ("rand_like", (), {}),
    ("full_like", (2.5,), {}), ("full_like", (True,), {}), ("zeros_like", (), {"dtype": "int64"}),
    ("ones_like", (), {"dtype": "float64"}),
]
DETERMINISTIC = {"zeros", "ones", "full", "arange", "eye"}


def _kwargs_for(lib, kwargs):
    return {k: (getattr(lib, v) if k == "dtype" else v) for k, v in kwargs.items()}


def _torch_dtype_name(dtype):
    return str(dtype).removeprefix("torch.")


@pytest.mark.parametrize("name, args, kwargs", TORCH_CASES, ids=lambda c: str(c))
def test_shape_dtype_and_values_match_torch(name, args, kwargs):
    torch = pytest.importorskip("torch")
    ours = getattr(minires, name)(*args, **_kwargs_for(np, kwargs))
    theirs = getattr(torch, name)(*args, **_kwargs_for(torch, kwargs))
    assert ours.shape == tuple(theirs.shape)
    assert ours.dtype.name == _torch_dtype_name(theirs.dtype)
    if name in DETERMINISTIC:
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.parametrize("name, args, kwargs", LIKE_CASES, ids=lambda c: str(c))
@pytest.mark.parametrize("source", ["float32", "float64", "int64"])
def test_like_shape_and_dtype_match_torch(name, args, kwargs, source):
    torch = pytest.importorskip("torch")
    if name in ("randn_like", "rand_like") and "dtype" not in kwargs and source == "int64":
        pytest.skip("both refuse random numbers of an integer dtype")
    base = np.arange(6).reshape(2, 3).astype(source)
    ours = getattr(minires, name)(minires.tensor(base), *args, **_kwargs_for(np, kwargs))
    theirs = getattr(torch, name)(torch.from_numpy(base), *args, **_kwargs_for(torch, kwargs))
    assert ours.shape == tuple(theirs.shape)
    assert ours.dtype.name == _torch_dtype_name(theirs.dtype)
    if name in ("zeros_like", "ones_like", "full_like"):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.parametrize("name", ["randn", "rand"])
def test_random_dtype_errors_match_torch(name):
    torch = pytest.importorskip("torch")
    with pytest.raises((RuntimeError, NotImplementedError)):
        getattr(torch, name)(3, dtype=torch.int64)
    with pytest.raises(TypeError):
        getattr(minires, name)(3, dtype=np.int64)
