"""Training, evaluation and resumption; one process or DistributedDataParallel under torchrun.

A run directory holds everything needed to continue or audit a run:

- ``config.json``  the recipe, the spec text, the overrides and the spec's counts
- ``metrics.jsonl`` one JSON object per epoch (train/test loss and accuracy, lr, time)
- ``checkpoint.pt`` model, optimizer, scheduler, RNG state and epoch, written atomically
  after every epoch (a killed run loses at most the epoch in progress)
- ``summary.json``  weights, MACs, best/final accuracy, wall time, once the run ends

Checkpoints hold only tensors and plain containers and are read with ``weights_only=True``.
Under torchrun (``WORLD_SIZE > 1``) every rank trains on its shard of each epoch (the
sampler is distributed), metrics are summed over ranks, and only rank 0 writes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

import mgspec
from mgspec.errors import Location, SpecError
from mgspec.schema import Spec
from mgspec.train.batches import EpochBatches
from mgspec.train.data import Split, dataset_info, load
from mgspec.train.memory import tune_malloc
from mgspec.train.recipe import TrainConfig, fit_spec

CONFIG, METRICS, CHECKPOINT, SUMMARY = "config.json", "metrics.jsonl", "checkpoint.pt", "summary.json"


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()


def init_distributed(device: str) -> Dist:
    """Join the torchrun process group when launched by it (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def finish_distributed(ok: bool = True) -> None:
    """Leave the process group cleanly (gloo aborts the process if it is still alive at exit).

    After a failure there is no barrier: the other ranks may never reach it.
    """
    if dist.is_available() and dist.is_initialized():
        if ok:
            dist.barrier()
        dist.destroy_process_group()


@dataclass
class Run:
    """A prepared run: where it lives, what it trains and how."""

    directory: Path
    config: TrainConfig
    spec_path: str
    overrides: list[str]
    adapted: list[str] = field(default_factory=list)

    @property
    def checkpoint(self) -> Path:
        return self.directory / CHECKPOINT


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _spec_record(spec_path: str | Path, overrides: list[str], spec: Spec) -> dict:
    counts = mgspec.count_spec(spec)
    return {
        "path": str(spec_path),
        "text": Path(spec_path).read_text(),
        "overrides": overrides,
        "resolved": spec.model_dump(mode="json"),
        "weights": counts.total,
        "macs": counts.macs,
        "family": counts.family,
        "name": spec.name,
    }


def prepare(
    spec_path: str | Path,
    overrides: Sequence[str],
    config: TrainConfig,
    directory: str | Path,
    *,
    resume: bool = False,
    explicit: Sequence[str] = (),
    experiment: dict | None = None,
) -> Run:
    """Create (or reopen with ``resume``) a run directory and check it fits the spec and recipe.

    ``explicit`` names the recipe options the user passed; on resume they must agree with the
    stored recipe, except the runtime ones (epochs, device, workers, ...). ``experiment`` (e.g. the
    paper row a run reproduces) is recorded in config.json and summary.json; a resumed run keeps its own.
    """
    directory = Path(directory)
    info = dataset_info(config.dataset)
    spec, full, adapted = fit_spec(spec_path, list(overrides), info)
    record = _spec_record(spec_path, full, spec)
    if resume:
        stored_path = directory / CONFIG
        if not stored_path.is_file():
            raise SpecError("not a run directory (no config.json)", Location(str(directory)), hint="check --resume")
        stored = json.loads(stored_path.read_text())
        if stored["spec"]["resolved"] != record["resolved"]:
            raise SpecError(
                f"the run was trained from a different spec ({stored['spec']['path']} "
                f"with {stored['spec']['overrides'] or 'no overrides'})",
                Location(str(spec_path)),
                hint="resume with the spec and --set options the run started with",
            )
        old = TrainConfig.from_dict(stored["config"])
        for name in explicit:
            if name not in TrainConfig.RUNTIME and getattr(config, name) != getattr(old, name):
                raise SpecError(
                    f"--{name.replace('_', '-')} {getattr(config, name)} differs from the run's "
                    f"{getattr(old, name)}; a resumed run keeps its recipe",
                    Location(str(directory)),
                )
        runtime = {k: getattr(config, k) for k in TrainConfig.RUNTIME if k in explicit or k == "data_dir"}
        config = TrainConfig.from_dict({**old.as_dict(), **runtime})
        experiment = experiment or stored.get("experiment")
    else:
        if (directory / CHECKPOINT).exists() or (directory / METRICS).exists():
            raise SpecError(
                "run directory already holds a run",
                Location(str(directory)),
                hint=f"continue it with --resume {directory}, or choose another --out",
            )
    run = Run(directory, config, str(spec_path), full, adapted)
    if int(os.environ.get("RANK", "0")) == 0:
        directory.mkdir(parents=True, exist_ok=True)
        payload = {"mgspec": mgspec.__version__, "config": config.as_dict(), "spec": record}
        if experiment is not None:
            payload["experiment"] = experiment
        _atomic_write(directory / CONFIG, lambda p: p.write_text(json.dumps(payload, indent=2) + "\n"))
    return run


def _device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"--device {name}: CUDA is not available here", hint="use --device cpu")
    return device


def _loader(batches: EpochBatches, workers: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False, num_workers=workers)


def _epoch_pass(
    model: nn.Module,
    batches: EpochBatches,
    config: TrainConfig,
    device: torch.device,
    dist_: Dist,
    optimizer: torch.optim.Optimizer | None = None,
    advance: Callable[[], None] = lambda: None,
) -> tuple[float, float, int]:
    """One pass; trains when given an optimizer. Returns loss, accuracy and images over all ranks."""
    training = optimizer is not None
    model.train(training)
    memory = torch.channels_last if config.channels_last else torch.contiguous_format
    loss_sum = correct = seen = 0.0
    with torch.set_grad_enabled(training):
        for images, labels in _loader(batches, config.workers):
            images = images.to(device, memory_format=memory, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
            if training:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            loss_sum += loss.item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
            advance()
    loss_sum, correct, seen = dist_.sum([loss_sum, correct, seen])
    return loss_sum / max(seen, 1), correct / max(seen, 1), int(seen)


def _batch_size(config: TrainConfig, dist_: Dist) -> int:
    if config.batch_size % dist_.world:
        raise SpecError(f"--batch-size {config.batch_size} is not divisible by the {dist_.world} processes")
    return config.batch_size // dist_.world


def _make_model(run: Run, device: torch.device) -> nn.Module:
    torch.manual_seed(run.config.seed)
    model = mgspec.create_model(run.spec_path, run.overrides).to(device)
    if run.config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def train(run: Run, *, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Train to ``run.config.epochs`` (continuing from the checkpoint when there is one)."""
    config = run.config
    tune_malloc()
    dist_ = init_distributed(config.device)
    device = _device(
        config.device if dist_.world == 1 or not config.device.startswith("cuda") else f"cuda:{dist_.rank}"
    )
    info = dataset_info(config.dataset)
    train_split, test_split = (
        load(config.dataset, config.data_dir, "train"),
        load(config.dataset, config.data_dir, "test"),
    )
    model = _make_model(run, device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: config.lr_at(e) / config.lr)
    start, best, elapsed = 0, None, 0.0
    if run.checkpoint.exists():
        state = torch.load(run.checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"].cpu())
        start, elapsed = int(state["epoch"]), float(state["elapsed"])
        best = state.get("best")
        for group in optimizer.param_groups:  # the schedule is a function of the epoch (and --epochs)
            group["lr"] = config.lr_at(start)
        if dist_.main and start >= config.epochs:
            log(f"{run.directory} has trained {start} of {config.epochs} epochs already; nothing to do")
        elif dist_.main:
            log(f"resuming {run.directory} at epoch {start + 1} of {config.epochs}")
    if dist_.main:
        _trim_metrics(run.directory / METRICS, start)
    per_rank = _batch_size(config, dist_)

    def epoch_batches(epoch: int) -> EpochBatches:
        batches = EpochBatches(
            train_split, info, per_rank, train=True, seed=config.seed, epoch=epoch, rank=dist_.rank, world=dist_.world
        )
        if config.max_batches is not None:  # a smoke test: the first batches of the epoch's order only
            del batches.batches[config.max_batches :]
        return batches

    local = model
    if config.compile_enabled(steps=config.epochs * len(epoch_batches(0))):
        local = torch.compile(model)
    trained = local
    if dist_.world > 1:
        # The paper's level-1 R/Pi are weights no op uses; DDP must be told not to wait for their gradients.
        unused = mgspec.count(model.graph).unused > 0
        trained = nn.parallel.DistributedDataParallel(
            trained, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused
        )

    test_batches = EpochBatches(test_split, info, per_rank, train=False, rank=dist_.rank, world=dist_.world)
    record = None
    with _Progress(progress and dist_.main, config.epochs, len(epoch_batches(0)), start) as bar:
        for epoch in range(start, config.epochs):
            lr = optimizer.param_groups[0]["lr"]
            t0 = time.perf_counter()
            train_loss, train_acc, images = _epoch_pass(
                trained, epoch_batches(epoch), config, device, dist_, optimizer, bar.advance
            )
            train_time = time.perf_counter() - t0
            scheduler.step()
            if dist_.world > 1:  # evaluate rank 0's BatchNorm statistics everywhere, without DDP's
                for buffer in model.buffers():  # per-forward collectives (test shards may differ in length)
                    dist.broadcast(buffer, 0)
            test_loss, test_acc, _ = _epoch_pass(local, test_batches, config, device, dist_)
            elapsed += time.perf_counter() - t0
            if best is None or test_acc > best["test_acc"]:
                best = {"epoch": epoch + 1, "test_acc": test_acc}
            record = {
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "test_loss": test_loss,
                "test_acc": test_acc,
                "images_per_s": images / train_time,
                "elapsed_s": elapsed,
            }
            if dist_.main:
                _save(run, model, optimizer, scheduler, epoch + 1, elapsed, best, record)
            bar.epoch_done(record)
    if record is None:  # nothing left to train: report the stored run
        record = json.loads((run.directory / METRICS).read_text().splitlines()[-1])
    summary = _summary(run, record, best)
    if dist_.main:
        _atomic_write(run.directory / SUMMARY, lambda p: p.write_text(json.dumps(summary, indent=2) + "\n"))
    return summary


def _save(run: Run, model, optimizer, scheduler, epoch: int, elapsed: float, best: dict, record: dict) -> None:
    # Metrics first: a crash in between leaves a metrics line for an epoch the checkpoint lacks,
    # which train() drops when it starts again (see _trim_metrics), never the reverse.
    with (run.directory / METRICS).open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    state = {
        "epoch": epoch,
        "elapsed": elapsed,
        "best": best,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": torch.get_rng_state(),
    }
    _atomic_write(run.checkpoint, lambda p: torch.save(state, p))


def _trim_metrics(path: Path, epochs: int) -> None:
    """Keep the metrics of the first ``epochs`` epochs (drop lines of an epoch lost in a crash)."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["epoch"] <= epochs]
    if len(kept) != len(lines):
        _atomic_write(path, lambda p: p.write_text("".join(line + "\n" for line in kept)))


def _summary(run: Run, last: dict, best: dict | None) -> dict:
    stored = json.loads((run.directory / CONFIG).read_text())
    return {
        "spec": stored["spec"]["name"],
        "family": stored["spec"]["family"],
        "dataset": run.config.dataset,
        "seed": run.config.seed,
        "weights": stored["spec"]["weights"],
        "macs": stored["spec"]["macs"],
        "epochs": last["epoch"],
        "best_test_acc": best["test_acc"] if best else last["test_acc"],
        "best_epoch": best["epoch"] if best else last["epoch"],
        "final_test_acc": last["test_acc"],
        "final_train_acc": last["train_acc"],
        "final_test_loss": last["test_loss"],
        "wall_time_s": last["elapsed_s"],
        "images_per_s": last["images_per_s"],
        **({"experiment": stored["experiment"]} if "experiment" in stored else {}),
    }


class _Progress:
    """A rich progress bar over all batches of the remaining epochs, with ETA (rank 0 only)."""

    def __init__(self, enabled: bool, epochs: int, batches_per_epoch: int, start: int) -> None:
        self.enabled, self.epochs = enabled, epochs
        self.total = (epochs - start) * batches_per_epoch

    def __enter__(self):
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
            )
            self.progress.__enter__()
            self.task = self.progress.add_task("training", total=self.total)
        return self

    def advance(self) -> None:
        if self.enabled:
            self.progress.advance(self.task)

    def epoch_done(self, r: dict) -> None:
        if self.enabled:
            self.progress.console.print(
                f"epoch {r['epoch']:>3}/{self.epochs}  lr {r['lr']:.4g}  "
                f"train {r['train_loss']:.3f} / {100 * r['train_acc']:.2f}%  "
                f"test {r['test_loss']:.3f} / {100 * r['test_acc']:.2f}%  {r['images_per_s']:.0f} img/s"
            )

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.progress.__exit__(*exc)


def evaluate(
    spec_path: str | Path,
    overrides: Sequence[str],
    checkpoint: str | Path,
    dataset: str,
    data_dir: str | Path,
    *,
    batch_size: int = 256,
    device: str = "cpu",
    split: str = "test",
) -> dict:
    """Loss and accuracy of a checkpoint (a run's ``checkpoint.pt`` or a bare state_dict)."""
    info = dataset_info(dataset)
    _, full, _ = fit_spec(spec_path, list(overrides), info)
    dev = _device(device)
    graph = mgspec.compile_graph(spec_path, full)
    model = mgspec.build_model(graph).to(dev)
    path = Path(checkpoint)
    if path.is_dir():
        path = path / CHECKPOINT
    try:
        state = torch.load(path, map_location=dev, weights_only=True)
    except FileNotFoundError:
        raise SpecError("no such checkpoint", Location(str(path))) from None
    except Exception as exc:  # a file that is not a torch checkpoint, or holds code objects
        raise SpecError(f"cannot read checkpoint: {str(exc).splitlines()[0]}", Location(str(path))) from None
    weights = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        raise SpecError("not a checkpoint or state_dict", Location(str(path)))
    missing, unexpected = _mismatch(model, weights)
    if missing or unexpected:
        raise SpecError(
            f"checkpoint does not fit the spec: {len(missing)} missing and {len(unexpected)} unexpected keys"
            + (f" (e.g. {(missing or unexpected)[0]})" if missing or unexpected else ""),
            Location(str(path)),
            hint="evaluate with the spec and --set options the checkpoint was trained with",
        )
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise SpecError(
            f"checkpoint does not fit the spec: {str(exc).splitlines()[-1].strip()}", Location(str(path))
        ) from None
    data: Split = load(dataset, data_dir, split)
    batches = EpochBatches(data, info, batch_size, train=False)
    config = TrainConfig(dataset=dataset, data_dir=str(data_dir), batch_size=batch_size, device=device)
    loss, accuracy, images = _epoch_pass(model, batches, config, dev, Dist())
    counts = mgspec.count(graph)
    return {
        "spec": counts.name,
        "dataset": dataset,
        "split": split,
        "images": images,
        "loss": loss,
        "accuracy": accuracy,
        "weights": counts.total,
        "macs": counts.macs,
    }


def _mismatch(model: nn.Module, weights: dict) -> tuple[list[str], list[str]]:
    expected = set(model.state_dict())
    return sorted(expected - set(weights)), sorted(set(weights) - expected)


def aggregate(summaries: list[dict]) -> dict:
    """Mean and standard deviation over seeds, as the paper's tables report them."""
    keys = ("best_test_acc", "final_test_acc", "final_train_acc", "wall_time_s")
    out = {k: summaries[0][k] for k in ("spec", "family", "dataset", "weights", "macs", "epochs")}
    out["seeds"] = [s["seed"] for s in summaries]
    for key in keys:
        values = torch.tensor([s[key] for s in summaries], dtype=torch.float64)
        out[key] = {"mean": values.mean().item(), "std": values.std(unbiased=True).item() if len(values) > 1 else 0.0}
    return out
