"""One training step of mgspec's models on a GPU, against the cost model's floor (one run, <= 6 minutes).

    python benchmarks/gpu_step.py --out DIR [--budget 330] [--compile] [--dry]

Models (MgNet_{A,B}, MGiaD cK=64 and cK=16 with gs=4, ResNet-18) x batch 128/512 x fp32/bf16 x
eager / CUDA graph (/ torch.compile with --compile) x mgspec's kernels off/on: milliseconds per
step (median of interleaved rounds), kernels per step (profiler), % of the cost model's floor
(mgspec.cost); then every distinct convolution's forward / input-gradient / weight-gradient time.
Results: DIR/gpu_step.json after each stage and DIR/gpu_step.md at the end, with the machine,
versions and load. ``--dry`` runs it tiny on the CPU (a test does).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mgspec  # noqa: E402
from mgspec.cost import cost  # noqa: E402

T0 = time.time()
MODELS = [
    ("MgNet_{A,B}", "specs/mgnet_cifar10.yaml", []),
    ("MGiaD cK=64 gs=4", "specs/mgiad_cifar10.yaml", []),
    ("MGiaD cK=16 gs=4", "specs/mgiad_cifar10.yaml", ["channel_grid.coarsest=16"]),
    ("ResNet-18", "specs/resnet18_cifar10.yaml", []),
]
DRY_MODELS = [("MGiaD small", "specs/mgiad_small_cifar10.yaml", [])]


def left(budget: float) -> float:
    return budget - (time.time() - T0)


def log(*args) -> None:
    print(f"[{time.time() - T0:6.1f}s]", *args, flush=True)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def environment(dev: torch.device, dry: bool) -> dict:
    """Versions, machine, load, and the two ceilings measured here (copy rate, bf16 matmul)."""
    r = {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
         "python": platform.python_version(), "host": platform.node(), "cpus": os.cpu_count(),
         "load_before": os.getloadavg()}  # fmt: skip
    try:
        import triton

        r["triton"] = triton.__version__
    except ImportError:
        r["triton"] = None
    if dev.type != "cuda":
        return r
    r["gpu"] = torch.cuda.get_device_name()
    x = torch.randn(2**28 if not dry else 2**16, device=dev)
    y = torch.empty_like(x)
    r["copy_TBps"] = 2 * x.numel() * 4 / timed(lambda: y.copy_(x), dev, 10) / 1e12
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    r["bf16_mm_TFLOPs"] = 2 * 8192**3 / timed(lambda: a @ a, dev, 10) / 1e12
    return r


def timed(fn, dev: torch.device, n: int) -> float:
    """Seconds per call: warm-up, then ``n`` calls between device events (host clock on CPU)."""
    for _ in range(3):
        fn()
    sync(dev)
    if dev.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(n):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / n
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def local_step(model, dtype, dev, mode: str):
    """SGD momentum + cross-entropy, autocast; ``graph``: whole step captured after side-stream warm-up."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    net = torch.compile(model) if mode == "compiled" else model

    def step(x, y):
        # autocast's weight cache does not survive graph capture: cast at every use there
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None, cache_enabled=mode != "graph"):
            loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
        return loss

    if mode != "graph":
        return step

    def captured(x, y):
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                step(x, y)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            step(x, y)
        return g.replay

    return captured


def kernels_per_step(fn, dev) -> int | None:
    if dev.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    sync(dev)
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        fn()
        sync(dev)
    return sum(1 for e in p.events() if e.device_type.name == "CUDA")


def stage_steps(a, dev, env, results: list) -> None:
    """Per model and batch: build every configuration, time them in interleaved rounds, free them."""
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    models = DRY_MODELS if a.dry else MODELS
    batches = [4] if a.dry else [128, 512]
    groups = [(m, bs) for m in models for bs in batches]
    end = T0 + 0.75 * a.budget  # the rest is for the convolutions
    for g, ((name, spec, ov), bs) in enumerate(groups):
        deadline = time.time() + (end - time.time()) / (len(groups) - g)
        if time.time() > end - 5:
            log("steps: budget spent")
            return
        rows = time_group(a, dev, name, spec, ov, bs, deadline)
        results.extend(rows)
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def time_group(a, dev, name, spec, ov, bs, deadline) -> list[dict]:
    graph = mgspec.compile_graph(ROOT / spec, ov)
    dtypes = [("bf16", torch.bfloat16), ("fp32", None)]
    modes = ["eager"] + (["graph"] if dev.type == "cuda" else []) + (["compiled"] if a.compile else [])
    rows, runners = [], {}
    for (dname, dtype), mode, kern in [(d, m, k) for d in dtypes for m in modes for k in (False, True)]:
        row = {"model": name, "batch": bs, "dtype": dname, "mode": mode, "kernels_flag": kern}
        rows.append(row)
        if time.time() > deadline:
            row["error"] = "not run: out of time"
            continue
        try:
            torch.manual_seed(0)
            model = mgspec.create_model(ROOT / spec, ov, kernels=kern).to(dev).to(memory_format=torch.channels_last)
            x = torch.randn(bs, 3, 32, 32, device=dev).to(memory_format=torch.channels_last)
            y = torch.randint(0, 10, (bs,), device=dev)
            row["step"], run = runner(model, dtype, dev, mode, x, y)
            c = cost(graph, bs, dname)
            row.update(floor_ms=1e3 * c.floor_s(False), floor_fused_ms=1e3 * c.floor_s(True),
                       model_kernels=c.step.kernels, flops=c.step.flops)  # fmt: skip
            row["kernels"] = kernels_per_step(run, dev)
            runners[len(rows) - 1] = run
        except Exception as exc:  # noqa: BLE001 -- a failing configuration is a row, not the end of the run
            row["error"] = repr(exc)[:300]
    for _ in range(1 if a.dry else 5):  # interleaved: every configuration once per round
        for i, run in runners.items():
            if time.time() > deadline and rows[i].get("ms_rounds"):
                continue
            rows[i].setdefault("ms_rounds", []).append(1e3 * timed(run, dev, 2 if a.dry else 10))
    for row in rows:
        if row.get("ms_rounds"):
            row["ms"] = statistics.median(row["ms_rounds"])
            row["floor_pct"] = 100 * row["floor_ms"] / row["ms"]
            row["img_s"] = row["batch"] / row["ms"] * 1e3
        log("step", {k: v for k, v in row.items() if k != "ms_rounds"})
    return rows


def runner(model, dtype, dev, mode, x, y):
    """(which step, a no-argument callable running one step): mgspec.train.step's where it fits."""
    try:
        from mgspec.train.step import make_step

        fn = make_step(model, dtype=dtype, device=dev, cuda_graph=mode == "graph")
        run = fn(x, y) if mode == "graph" else (lambda: fn(x, y))
        if callable(run):
            return "mgspec.train.step", run
    except (ImportError, TypeError):  # absent, or another signature: the local step, not a guess
        pass
    fn = local_step(model, dtype, dev, mode)
    return "local", fn(x, y) if mode == "graph" else (lambda: fn(x, y))


def distinct_convs(graph) -> list[dict]:
    from mgspec.ir import node, slots
    from mgspec.verify import spatial_sizes

    shapes = spatial_sizes(graph, graph.graph["spec"].input.shape)
    seen: dict[tuple, dict] = {}
    for i in graph.nodes:
        n = node(graph, i)
        if n.op != "conv":
            continue
        s = slots(graph)[n.slot]
        key = (shapes[n.args[0]], s.cout, s.kernel, s.stride, s.groups)
        seen.setdefault(key, {"x": list(key[0]), "cout": s.cout, "k": s.kernel, "stride": s.stride,
                              "groups": s.groups, "uses": 0})["uses"] += 1  # fmt: skip
    return list(seen.values())


def conv_passes(x, w, st, pad, g, go) -> dict:
    """Forward, input gradient and weight gradient of one convolution, as separate calls."""
    cb = torch.ops.aten.convolution_backward
    return {
        "fwd": lambda: F.conv2d(x, w, stride=st, padding=pad, groups=g),
        "dgrad": lambda: cb(go, x, w, None, st, pad, [1, 1], False, [0, 0], g, [True, False, False]),
        "wgrad": lambda: cb(go, x, w, None, st, pad, [1, 1], False, [0, 0], g, [False, True, False]),
    }


def stage_convs(a, dev, results: list) -> None:
    torch.backends.cudnn.benchmark = True
    models = DRY_MODELS if a.dry else MODELS[1:3] + MODELS[:1]
    bs = 2 if a.dry else 128
    for name, spec, ov in models:
        convs = distinct_convs(mgspec.compile_graph(ROOT / spec, ov))
        for cv in convs[:3] if a.dry else convs:
            for dname, dtype in [("bf16", torch.bfloat16), ("fp32", torch.float32)]:
                if left(a.budget) < 10:
                    return
                x = torch.randn(bs, *cv["x"], device=dev, dtype=dtype).to(memory_format=torch.channels_last)
                w = torch.randn(cv["cout"], cv["x"][0] // cv["groups"], cv["k"], cv["k"], device=dev, dtype=dtype)
                st, pad, g = [cv["stride"]] * 2, [cv["k"] // 2] * 2, cv["groups"]
                go = torch.randn_like(F.conv2d(x, w, stride=st, padding=pad, groups=g))
                row = {"model": name, "dtype": dname, **cv}
                for p, fn in conv_passes(x, w, st, pad, g, go).items():
                    row[f"{p}_us"] = 1e6 * timed(fn, dev, 1 if a.dry else 20)
                results.append(row)


def report(r: dict) -> str:
    env = r["env"]
    lines = ["# GPU training step", "", f"Machine: {env.get('gpu', 'CPU')}, torch {env['torch']}, CUDA {env['cuda']}, "
             f"cuDNN {env['cudnn']}, triton {env['triton']}, {env['cpus']} CPUs; load {env['load_before']} before, "
             f"{r.get('load_after')} after; copy {env.get('copy_TBps', 0):.2f} TB/s, bf16 matmul "
             f"{env.get('bf16_mm_TFLOPs', 0):.0f} TFLOP/s. Median of interleaved rounds.", "",
             "| model | batch | dtype | mode | mgspec kernels | ms/step | img/s | kernels/step | cost-model kernels | "
             "floor ms (unfused/fused) | % of floor |", "|---|--:|---|---|---|--:|--:|--:|--:|--:|--:|"]  # fmt: skip
    for s in r["steps"]:
        if "ms" not in s:
            lines.append(f"| {s['model']} | {s['batch']} | {s['dtype']} | {s['mode']} | {s['kernels_flag']} | "
                         f"{s.get('error', 'not run')} | | | | | |")  # fmt: skip
            continue
        lines.append(f"| {s['model']} | {s['batch']} | {s['dtype']} | {s['mode']} | {s['kernels_flag']} | "
                     f"{s['ms']:.2f} | {s['img_s']:,.0f} | {s.get('kernels') or ''} | {s['model_kernels']:,} | "
                     f"{s['floor_ms']:.2f} / {s['floor_fused_ms']:.2f} | {s['floor_pct']:.1f}% |")  # fmt: skip
    lines += ["", "| model | dtype | input | cout | k | stride | groups | uses | fwd us | dgrad us | wgrad us |",
              "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]  # fmt: skip
    for c in r["convs"]:
        lines.append(f"| {c['model']} | {c['dtype']} | {'x'.join(map(str, c['x']))} | {c['cout']} | {c['k']} | "
                     f"{c['stride']} | {c['groups']} | {c['uses']} | {c['fwd_us']:.1f} | {c['dgrad_us']:.1f} | "
                     f"{c['wgrad_us']:.1f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget", type=float, default=330, help="seconds for the whole run")
    ap.add_argument("--compile", action="store_true", help="also torch.compile each step (minutes)")
    ap.add_argument("--dry", action="store_true", help="tiny, on the CPU: checks the script itself")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    dev = torch.device("cuda" if torch.cuda.is_available() and not a.dry else "cpu")
    if dev.type == "cpu" and not a.dry:
        ap.error("no CUDA device: run with --dry on a CPU")
    r: dict = {"command": " ".join(sys.argv), "env": environment(dev, a.dry), "steps": [], "convs": []}
    for name, fn in (("steps", lambda: stage_steps(a, dev, r["env"], r["steps"])),
                     ("convs", lambda: stage_convs(a, dev, r["convs"]))):  # fmt: skip
        log("stage", name, f"{left(a.budget):.0f}s left")
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 -- keep what was measured
            r.setdefault("errors", {})[name] = repr(exc)[:500]
        r["load_after"] = os.getloadavg()
        (a.out / "gpu_step.json").write_text(json.dumps(r, indent=1, default=str))
    (a.out / "gpu_step.md").write_text(report(r))
    print(report(r))
    log("done")


if __name__ == "__main__":
    main()
