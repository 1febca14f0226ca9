"""GPU benchmarks: our CUDA kernels per op, and ResNet training steps, against PyTorch (cuDNN).

    python benchmarks/bench_gpu.py [--repeats 20] [--steps 20] [--batches 128 512] [--depths 20 56] [--dry-run]

Needs CuPy and an NVIDIA GPU; PyTorch with CUDA is optional (without it the
"torch" columns stay empty). Both frameworks run float32 NCHW in this process,
one after the other. Times come from CUDA events around ``--repeats`` runs
after warm-up runs (which also compile our kernels and let cuDNN pick its
algorithms), so Python overhead between launches is included, as in training.

Two tables:
1. per op, forward + backward with a random upstream gradient, on ResNet-20's
   layer shapes (plus the fused SGD update over all of ResNet-20's parameters);
   ratio = minires ms / torch ms (lower is better);
2. training step (forward, cross-entropy, backward, SGD momentum 0.9 + weight
   decay) of ResNet-20/56 at each batch size: images/second and
   ratio = minires / torch (higher is better; targets 0.5 at batch 128, 0.8 at 512),
   plus the memory each framework's allocator holds after the steps.
   minires computes in full FP32. PyTorch runs twice: with its defaults (cuDNN
   convolutions may use TF32 tensor cores, which round inputs to 10 mantissa
   bits) and with TF32 off; the ratio compares like with like (TF32 off), the
   TF32 column shows what the defaults gain;
3. per training step: kernel launches (all of the process's, counted by PyTorch's
   profiler through CUPTI when PyTorch is there; else only ours) and host
   milliseconds (the time Python takes to *queue* one step, GPU idle at the
   start), for both frameworks.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout works uninstalled

import minires
import minires.functional as F
from minires import optim
from minires.backends import cuda_status
from minires.models import CifarResNet

try:
    import torch
    import torch.nn.functional as TF

    if not torch.cuda.is_available():
        torch = None
except ImportError:
    torch = None

CONV_SHAPES = [(3, 16, 32, 1), (16, 16, 32, 1), (16, 32, 32, 2), (32, 32, 16, 1), (32, 64, 16, 2), (64, 64, 8, 1)]
FEATURE_SHAPES = [(16, 32), (32, 16), (64, 8)]  # (channels, image size) of the three stages
TARGETS = {128: 0.5, 512: 0.8}


def cupy_milliseconds(step, repeats):
    """Mean milliseconds per call of ``step`` on the GPU, by CUDA events, after 3 warm-up calls."""
    import cupy

    for _ in range(3):
        step()
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    for _ in range(repeats):
        step()
    stop.record()
    stop.synchronize()
    return cupy.cuda.get_elapsed_time(start, stop) / repeats


def torch_milliseconds(step, repeats):
    for _ in range(3):
        step()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        step()
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop) / repeats


def op_cases(batch):
    """(name, shape label, minires forward, torch forward, input shapes, parameter shapes)."""
    cases = []
    for cin, cout, size, stride in CONV_SHAPES:
        cases.append((f"conv2d 3x3 s{stride}", f"{cin}->{cout} {size}x{size}",
                      lambda x, w, s=stride: F.conv2d(x, w, stride=s, padding=1),
                      lambda x, w, s=stride: TF.conv2d(x, w, stride=s, padding=1),
                      [(batch, cin, size, size), (cout, cin, 3, 3)]))
    for channels, size in FEATURE_SHAPES:
        shape = (batch, channels, size, size)
        label = f"{channels}x{size}x{size}"
        cases.append(("batch_norm train", label,
                      lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True),
                      lambda x, g, b: TF.batch_norm(x, None, None, g, b, training=True),
                      [shape, (channels,), (channels,)]))
        cases.append(("relu", label, F.relu, TF.relu, [shape]))
        cases.append(("max_pool2d 3x3 s2 p1", label, lambda x: F.max_pool2d(x, 3, 2, 1),
                      lambda x: TF.max_pool2d(x, 3, 2, 1), [shape]))
    cases.append(("global_avg_pool2d", "64x8x8", F.global_avg_pool2d, lambda x: x.mean(dim=(2, 3)),
                  [(batch, 64, 8, 8)]))
    cases.append(("zero_pad_shortcut s2", "16->32 32x32", lambda x: F.zero_pad_shortcut(x, 32, 2),
                  lambda x: TF.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, 16)), [(batch, 16, 32, 32)]))
    return cases


def time_op(case, batch, repeats, rng):
    import cupy

    name, label, ours, theirs, shapes = case
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    inputs = [minires.tensor(a, device="cuda", requires_grad=True) for a in arrays]
    upstream = cupy.asarray(rng.standard_normal(ours(*inputs).shape).astype(np.float32))
    ours_ms = cupy_milliseconds(lambda: ours(*inputs).backward(upstream), repeats)
    torch_ms = None
    if torch is not None:
        t_inputs = [torch.tensor(a, device="cuda", requires_grad=True) for a in arrays]
        t_upstream = torch.as_tensor(cupy.asnumpy(upstream), device="cuda")
        torch_ms = torch_milliseconds(lambda: theirs(*t_inputs).backward(t_upstream), repeats)
    return name, label, ours_ms, torch_ms


def time_cross_entropy(batch, repeats, rng):
    logits = rng.standard_normal((batch, 10)).astype(np.float32)
    labels = rng.integers(0, 10, size=batch)
    z, y = minires.tensor(logits, device="cuda", requires_grad=True), labels  # host labels, as the loop passes them
    ours_ms = cupy_milliseconds(lambda: F.cross_entropy(z, y).backward(), repeats)
    torch_ms = None
    if torch is not None:
        tz = torch.tensor(logits, device="cuda", requires_grad=True)
        ty = torch.as_tensor(labels, device="cuda")
        torch_ms = torch_milliseconds(lambda: TF.cross_entropy(tz, ty).backward(), repeats)
    return "cross_entropy", f"{batch}x10", ours_ms, torch_ms


def time_sgd(repeats):
    model = CifarResNet(20).to("cuda")
    for p in model.parameters():
        p.grad = p.detach() * 0.01
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    ours_ms = cupy_milliseconds(optimizer.step, repeats)
    torch_ms = None
    if torch is not None:
        from torch_reference import TorchCifarResNet

        t_model = TorchCifarResNet(20).cuda()
        for p in t_model.parameters():
            p.grad = p.detach() * 0.01
        t_optimizer = torch.optim.SGD(t_model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        torch_ms = torch_milliseconds(t_optimizer.step, repeats)
    return "SGD step (momentum, wd)", "ResNet-20 params", ours_ms, torch_ms


def print_op_table(rows, batch):
    print(f"\nper op, forward + backward, batch {batch}, float32; ratio = minires / torch (lower is better)")
    header = f"{'op':<24} {'shape':<18} {'minires ms':>10} {'torch ms':>9} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for name, label, ours_ms, torch_ms in rows:
        theirs = f"{torch_ms:9.3f}" if torch_ms else f"{'':>9}"
        ratio = f"{ours_ms / torch_ms:6.2f}" if torch_ms else ""
        print(f"{name:<24} {label:<18} {ours_ms:10.3f} {theirs} {ratio:>6}")


def minires_step(depth, images, labels):
    """One training step of ResNet-depth on the GPU, as the training loop runs it (labels on the host)."""
    minires.manual_seed(0)
    model = CifarResNet(depth).to("cuda")
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = minires.tensor(images, device="cuda")

    def step():
        loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def torch_step(depth, images, labels):
    from torch_reference import TorchCifarResNet

    torch.manual_seed(0)
    t_model = TorchCifarResNet(depth).cuda()
    t_optimizer = torch.optim.SGD(t_model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    tx, ty = torch.as_tensor(images, device="cuda"), torch.as_tensor(labels, device="cuda")

    def t_step():
        loss = TF.cross_entropy(t_model(tx), ty)
        t_optimizer.zero_grad()
        loss.backward()
        t_optimizer.step()

    return t_step


def set_tf32(cudnn, matmul):
    """Whether cuDNN convolutions and cuBLAS matmuls may use TF32; returns the previous settings."""
    previous = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul
    return previous


def training_rates(depth, batch, steps, rng):
    """Images/second of minires, of torch with TF32 off and with its defaults (None without
    torch), and the MB each allocator holds."""
    import cupy

    images = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, size=batch)
    ours = batch / cupy_milliseconds(minires_step(depth, images, labels), steps) * 1000
    ours_mb = cupy.get_default_memory_pool().total_bytes() / 2**20
    cupy.get_default_memory_pool().free_all_blocks()
    fp32 = tf32 = theirs_mb = None
    if torch is not None:
        defaults = set_tf32(False, False)
        torch.cuda.reset_peak_memory_stats()
        fp32 = batch / torch_milliseconds(torch_step(depth, images, labels), steps) * 1000
        theirs_mb = torch.cuda.max_memory_reserved() / 2**20
        set_tf32(*defaults)
        tf32 = batch / torch_milliseconds(torch_step(depth, images, labels), steps) * 1000
        torch.cuda.empty_cache()
    return ours, ours_mb, fp32, tf32, theirs_mb


def host_milliseconds(step, synchronize, steps):
    """Median time Python takes to queue one step, starting each with an idle GPU."""
    import time

    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        synchronize()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    synchronize()
    return float(np.median(times)) * 1000


def launches_per_step(step, synchronize):
    """(kernel launches in one step, how they were counted)."""
    from minires.backends.cuda import loader

    step()  # warm-up: compiles, cuDNN algorithm search
    synchronize()
    if torch is not None:
        try:  # CUPTI sees every kernel in the process, CuPy's and cuBLAS's included
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                step()
                synchronize()
            kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
                       and not e.name.startswith(("Memcpy", "Memset"))]
            return len(kernels), "all (CUPTI)"
        except Exception as err:  # a profiler that cannot attach: fall back to counting ours
            print(f"(PyTorch's profiler could not count kernels: {type(err).__name__}: {err})")
    counted = [0]
    launch = loader.KernelFile.function

    def counting(self, name, dtype):
        kernel = launch(self, name, dtype)

        def run(*args):
            counted[0] += 1
            return kernel(*args)
        return run

    loader.KernelFile.function = counting
    try:
        step()
    finally:
        loader.KernelFile.function = launch
    synchronize()
    return counted[0], "ours only"


def print_overhead_table(depth, batch, steps, rng):
    import cupy

    images = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, size=batch)
    sync = cupy.cuda.Device().synchronize
    rows = [("minires", minires_step(depth, images, labels), sync)]
    if torch is not None:
        rows.append(("torch", torch_step(depth, images, labels), torch.cuda.synchronize))
    print(f"\nper training step, ResNet-{depth} at batch {batch}: launches and host time to queue it")
    header = f"{'framework':<10} {'launches':>8} {'counted':<13} {'host ms':>8}"
    print(header)
    print("-" * len(header))
    for name, step, synchronize in rows:
        count, how = launches_per_step(step, synchronize)
        print(f"{name:<10} {count:8d} {how:<13} {host_milliseconds(step, synchronize, steps):8.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per op")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per model")
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 56])
    parser.add_argument("--skip-ops", action="store_true", help="only the training-step table")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the settings and say what would be timed; needs no GPU")
    args = parser.parse_args()
    for name in ("repeats", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    for name in ("batches", "depths"):
        if any(value < 1 for value in getattr(args, name)):
            parser.error(f"--{name} must be positive, got {getattr(args, name)}")
    if any((depth - 2) % 6 for depth in args.depths):
        parser.error(f"--depths must be CIFAR ResNet depths 6n+2 (20, 32, 44, 56, 110), got {args.depths}")
    if args.dry_run:
        tables = "training steps" if args.skip_ops else f"per-op table at batch {args.batches[0]} and training steps"
        print(f"dry run: would time {tables} of ResNet-{', ResNet-'.join(map(str, args.depths))} at batch "
              f"{', '.join(map(str, args.batches))} ({args.repeats} repeats per op, {args.steps} steps per model), "
              f"then launches and host ms per step of ResNet-{args.depths[0]}")
        return 0
    usable, reason = cuda_status()
    if not usable:
        print(f"no usable GPU: {reason}", file=sys.stderr)
        return 2
    import cupy

    device = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    print(f"GPU: {device}; CuPy {cupy.__version__}; "
          + (f"PyTorch {torch.__version__} (cuDNN {torch.backends.cudnn.version()})" if torch else "no PyTorch with CUDA"))
    rng = np.random.default_rng(0)
    if not args.skip_ops:
        batch = args.batches[0]
        rows = [time_op(case, batch, args.repeats, rng) for case in op_cases(batch)]
        rows += [time_cross_entropy(batch, args.repeats, rng), time_sgd(args.repeats)]
        print_op_table(rows, batch)

    print(f"\ntraining step (forward, loss, backward, SGD), float32, {args.steps} timed steps; "
          "ratio = minires / torch images/s (higher is better)")
    header = f"{'model':<10} {'batch':>5} {'minires img/s':>13} {'torch FP32':>10} {'ratio':>6} {'target':>6} " \
             f"{'torch TF32':>10} {'ratio':>6} {'minires MB':>10} {'torch MB':>9}"
    print(header)
    print("-" * len(header))
    for depth in args.depths:
        for batch in args.batches:
            ours, ours_mb, fp32, tf32, theirs_mb = training_rates(depth, batch, args.steps, rng)

            def rate(value, width):
                return f"{value:{width}.0f}" if value else f"{'':>{width}}"

            def ratio(theirs):
                return f"{ours / theirs:6.2f}" if theirs else f"{'':>6}"

            target = f"{TARGETS[batch]:6.1f}" if batch in TARGETS else f"{'':>6}"
            t_mb = f"{theirs_mb:9.0f}" if theirs_mb else ""
            print(f"ResNet-{depth:<3} {batch:5d} {ours:13.0f} {rate(fp32, 10)} {ratio(fp32)} {target} "
                  f"{rate(tf32, 10)} {ratio(tf32)} {ours_mb:10.0f} {t_mb:>9}")
    for batch in args.batches:
        print_overhead_table(args.depths[0], batch, args.steps, rng)
    return 0


if __name__ == "__main__":
    sys.exit(main())
