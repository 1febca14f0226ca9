"""The kernel path queues a training step cheaply and safely.

* No host synchronisation: a whole step of the training loop, on the emulated kernel
  path with every array a DeviceArray (tests/kernel_instruments.py: reading a value
  back raises), reads nothing back. On a GPU (marked gpu), a step queued behind a
  kernel that keeps the GPU busy for a second must be queued well before that second
  is over.
* Launches look each compiled kernel up once per (kernel, dtype, device).
* Grid-stride loop counters cannot overflow the kernels' int: the guard is checked
  at the boundary, from sizes alone (nothing is allocated).
"""
import time

import numpy as np
import pytest

import minires
import minires.functional as F
from minires import optim
from minires.backends import cupy
from minires.backends.cuda import loader
from minires.backends.cuda.loader import BLOCK, INT_LIMIT, MAX_GRID, check_grid_stride
from minires.backends.emulator import EmulatedModule, emulate_kernels, emulator_status
from minires.models import cifar_resnet
from minires.training import loop, train_steps

from kernel_instruments import DeviceArray, HostRead, to_stand_in_device

needs_emulator = pytest.mark.skipif(not emulator_status()[0], reason=emulator_status()[1])


def test_device_array_refuses_every_read_back():
    a = to_stand_in_device(np.arange(6.0).reshape(2, 3))
    derived = [a + 1, a.sum(), a.max(axis=1), (a > 2).any(), np.matmul(a, a.T), a.argmax(axis=1)]
    assert all(type(d) is DeviceArray for d in derived)
    for read in (bool, float, int, lambda v: v.item(), lambda v: v.tolist(), str):
        with pytest.raises(HostRead):
            read(derived[1])


def small_model_on_stand_in_device():
    minires.manual_seed(0)
    model = cifar_resnet(8, width=4)
    for _, t in model.named_tensors():
        t.data = to_stand_in_device(t.data)
    return model


@needs_emulator
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_a_training_step_on_the_kernel_path_never_reads_back_from_the_device(monkeypatch, momentum):
    model = small_model_on_stand_in_device()
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=momentum, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((2, 3, 8, 8)).astype(np.float32), rng.integers(0, 10, size=2))] * 2
    # What the loop moves "to the device" becomes a DeviceArray; the images go through forward.
    monkeypatch.setattr(loop, "to_device", lambda array, device: to_stand_in_device(array))
    seen = []

    def forward(images):
        logits = model(minires.Tensor(to_stand_in_device(images.data)))
        seen.append(type(logits.data))
        return logits

    with emulate_kernels():
        metrics = train_steps(model, iter(batches), optimizer, 2, forward=forward, label_smoothing=0.1)
    # Not vacuous: the step ran on stand-in device arrays from end to end.
    assert seen == [DeviceArray, DeviceArray]
    assert all(type(p.data) is DeviceArray and type(p.grad.data) is DeviceArray for p in model.parameters())
    assert type(metrics.loss_sum) is DeviceArray
    assert np.isfinite(np.asarray(metrics.loss_sum))  # read back once, after the steps


@needs_emulator
def test_labels_already_on_the_device_are_checked_with_one_read_back():
    """The documented cost of passing device labels to the loss: the range check reads back."""
    logits = minires.Tensor(to_stand_in_device(np.zeros((2, 3), np.float32)))
    with emulate_kernels(), pytest.raises(HostRead):
        F.cross_entropy(logits, to_stand_in_device(np.array([0, 2])))


class CountingModule(EmulatedModule):
    lookups = 0

    def get_function(self, name):
        CountingModule.lookups += 1
        return super().get_function(name)


@needs_emulator
def test_each_kernel_is_looked_up_once_per_dtype_however_often_it_launches():
    x32, x64 = np.linspace(-1, 1, 50, dtype=np.float32), np.linspace(-1, 1, 50)
    CountingModule.lookups = 0
    with loader._kernel_provider(CountingModule):
        for _ in range(5):
            for x in (x32, x64):
                y = F.relu(minires.Tensor(x, requires_grad=True))
                y.sum().backward()
    assert CountingModule.lookups == 4  # relu_forward and relu_backward, for float and double


def test_device_scope_is_a_no_op_for_host_arrays():
    scope = loader.device_scope(np.zeros(3))
    assert scope is loader.device_scope(np.ones(2))  # one shared do-nothing context
    with scope:
        pass


def test_grid_stride_guard_at_the_int_boundary():
    threads = MAX_GRID * BLOCK
    check_grid_stride(INT_LIMIT - threads, threads)  # the last counter value is 2^31 - 1: fits
    with pytest.raises(ValueError, match="overflow the kernels' 32-bit int"):
        check_grid_stride(INT_LIMIT - threads + 1, threads)  # one more element and it wraps


def test_launch_over_refuses_a_size_whose_loop_counter_would_wrap():
    n = INT_LIMIT - 1000  # fits an int itself, but n + threads does not; nothing is allocated
    with pytest.raises(ValueError, match="use a smaller batch"):
        loader.KERNEL_FILES["relu.cu"].launch_over("relu_forward", np.float32, n, ())


SPIN = r"""
extern "C" __global__ void spin(long long cycles) {  // one thread keeps the GPU busy for `cycles` clocks
    long long start = clock64();
    while (clock64() - start < cycles) {}
}
"""


@pytest.mark.gpu
def test_a_training_step_on_the_gpu_is_queued_without_waiting_for_the_gpu():
    """Keep the GPU busy for about a second, then queue a training step: if anything in the
    step waited for the GPU, queueing it would take that second too."""
    minires.manual_seed(0)
    model = cifar_resnet(8).to("cuda")
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    batch = (rng.standard_normal((8, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, size=8))
    train_steps(model, iter([batch]), optimizer, 1, device="cuda")  # compile, fill the memory pools
    device = cupy.cuda.Device()
    device.synchronize()
    spin = cupy.RawKernel(SPIN, "spin")
    clock_khz = cupy.cuda.runtime.getDeviceProperties(device.id)["clockRate"]
    spin((1,), (1,), (np.int64(clock_khz * 1000),))  # about one second of work, queued
    start = time.perf_counter()
    metrics = train_steps(model, iter([batch]), optimizer, 1, device="cuda")
    queued = time.perf_counter() - start
    device.synchronize()
    total = time.perf_counter() - start
    assert total > 0.5, f"the spin kernel should have kept the GPU busy (took {total:.2f} s)"
    assert queued < total / 3, f"queueing the step took {queued:.2f} s of {total:.2f} s: it waited for the GPU"
    assert np.isfinite(metrics.loss)
