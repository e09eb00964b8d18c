"""MgNet_{A,B} and MGiaD with and without the grouped-convolution kernel, and in ONNX Runtime.

    python benchmarks/models.py [--rounds 3] [--threads 1] [--what train,infer] [--compile]

Models (the runtime backend, ``mgspec.create_model``, channels_last): MgNet_{A,B}, MGiaD cK=64/gs=4
and MGiaD cK=16/gs=4 at CIFAR size. Variants:

- ``eager``         the model as ``mgspec train`` runs it
- ``eager+kernel``  ``mgspec.create_model``'s default: the kernel where the kernel-selection pass chose it
  (MgNet has no grouped convs)
- ``folded``        inference only: the ``torch.export`` graph with BatchNorm folded (``mgspec.deploy``)
- ``compiled``      with ``--compile``: ``torch.compile`` (inference: with freezing)
- ``onnxruntime``   inference only: ``mgspec export``'s ONNX file in ONNX Runtime (all graph
  optimisations, as many intra-op threads as torch uses), when onnxruntime is installed

Training is one SGD step at batch 64; inference a forward pass in eval mode under ``no_grad`` at
batch 1 and 64. Every configuration runs once per round, rounds are interleaved, the table gives
the median. With one thread the timer is process CPU time (it counts ONNX Runtime's threads too),
which a loaded machine disturbs least; otherwise wall time. The load average is printed.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

import mgspec  # noqa: E402
from mgspec import deploy, kernels  # noqa: E402
from mgspec.train.memory import tune_malloc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CL = torch.channels_last
MODELS = [
    ("MgNet_{A,B}", "specs/mgnet_cifar10.yaml", []),
    ("MGiaD cK=64, gs=4", "specs/mgiad_cifar10.yaml", []),
    ("MGiaD cK=16, gs=4", "specs/mgiad_cifar10.yaml", ["channel_grid.coarsest=16"]),
]


def train_step(model, batch: int):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 32, 32).to(memory_format=CL)
    y = torch.randint(0, 10, (batch,))

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def infer(fn, batch: int):
    x = torch.randn(batch, 3, 32, 32).to(memory_format=CL)

    def run():
        with torch.no_grad():
            fn(x)

    return run


def onnx_session(model, directory: Path, threads: int):
    import onnxruntime as ort

    path = directory / f"m{id(model)}.onnx"
    deploy.export_onnx(model, path, input_shape=(3, 32, 32), dynamic_batch=True, trials=1)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.contiguous().numpy()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--what", default="train,infer")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement (at least 2 calls)")
    parser.add_argument("--compile", action="store_true", help="add torch.compile variants (minutes to compile)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune_malloc()
    what = set(args.what.split(","))
    cpu_clock = args.threads == 1
    clock = time.process_time if cpu_clock else time.perf_counter
    has_ort = importlib.util.find_spec("onnxruntime") is not None
    print(f"Machine: {describe()}; kernel: {kernels.isa() or 'unavailable'}; onnxruntime: {has_ort}")
    print(f"Load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    cases: dict = {}
    tmp = Path(tempfile.mkdtemp())
    for label, spec, overrides in MODELS:
        base = mgspec.create_model(ROOT / spec, overrides, kernels=False).to(memory_format=CL)
        macs = mgspec.count_spec(ROOT / spec, overrides).macs
        fast = mgspec.create_model(ROOT / spec, overrides).to(memory_format=CL)  # the kernel where the pass chose it
        fast.load_state_dict(base.state_dict())
        switched = sum(isinstance(m, kernels.KernelConv2d) for m in fast.modules()) if kernels.available() else 0
        if "train" in what:
            cases[(label, "train b64", "eager")] = (train_step(base.train(), 64), 64, macs * 3)
            if switched:
                cases[(label, "train b64", "eager+kernel")] = (train_step(fast.train(), 64), 64, macs * 3)
            if args.compile:
                cases[(label, "train b64", "compiled")] = (
                    train_step(torch.compile(copy.deepcopy(base)), 64),
                    64,
                    macs * 3,
                )
        if "infer" in what:
            plain, fast_eval = copy.deepcopy(base).eval(), copy.deepcopy(fast).eval()
            folded, _ = deploy.inference_graph(copy.deepcopy(base), torch.randn(2, 3, 32, 32), dynamic_batch=True)
            session = onnx_session(copy.deepcopy(base), tmp, args.threads) if has_ort else None
            for batch in (1, 64):
                task = f"infer b{batch}"
                cases[(label, task, "eager")] = (infer(plain, batch), batch, macs)
                if switched:
                    cases[(label, task, "eager+kernel")] = (infer(fast_eval, batch), batch, macs)
                cases[(label, task, "folded")] = (infer(folded, batch), batch, macs)
                if session is not None:
                    cases[(label, task, "onnxruntime")] = (infer(session, batch), batch, macs)
            if args.compile:
                with torch.no_grad():
                    torch._inductor.config.freezing = True
                    compiled = torch.compile(copy.deepcopy(base).eval())
                for batch in (1, 64):
                    cases[(label, f"infer b{batch}", "compiled")] = (infer(compiled, batch), batch, macs)
        print(f"  {label}: {switched} convolutions on the kernel", flush=True)
    reps, times = {}, {key: [] for key in cases}
    for r in range(args.rounds + 1):
        for key, (fn, _, _) in cases.items():
            if r == 0:
                fn()
                start = clock()
                fn()
                reps[key] = max(2, round(args.min_time / max(clock() - start, 1e-6)))
                continue
            start = clock()
            for _ in range(reps[key]):
                fn()
            times[key].append((clock() - start) / reps[key])
        print(f"  round {r} done", flush=True)
    print(f"Load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(
        f"Median of {args.rounds} interleaved rounds; {'CPU' if cpu_clock else 'wall'} time; {args.threads} thread(s)"
    )
    print()
    print("| model | task | variant | img/s | GFLOP/s | vs eager | vs MgNet eager |")
    print("|---|---|---|--:|--:|--:|--:|")
    for key, (_, batch, flops_macs) in cases.items():
        label, task, variant = key
        t = statistics.median(times[key])
        eager = statistics.median(times[(label, task, "eager")])
        mgnet = statistics.median(times[(MODELS[0][0], task, "eager")]) if (MODELS[0][0], task, "eager") in times else t
        print(
            f"| {label} | {task} | {variant} | {batch / t:.1f} | {2 * flops_macs * batch / t / 1e9:.0f} | "
            f"{eager / t:.2f}x | {mgnet / t:.2f}x |"
        )


if __name__ == "__main__":
    main()
