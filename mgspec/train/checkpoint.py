"""What a run directory keeps between epochs: the checkpoint, the metrics and the summary.

Every epoch appends its metrics line, then replaces ``checkpoint.pt`` atomically, then writes
``model.safetensors``; a run resumed after a crash drops a metrics line its checkpoint lacks
(:func:`trim_metrics`). :func:`resume` restores a run's states on any rank; :func:`remove_start`
cleans up after a run that failed before its first checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from mgspec import runs
from mgspec.errors import Location, RunError
from mgspec.train import artifacts, distributed, validation
from mgspec.train.distributed import Dist
from mgspec.train.rundir import Run

CONFIG, METRICS = runs.CONFIG, runs.METRICS
_atomic_write = runs.atomic_write


def resume(
    run: Run, model, optimizer, scheduler, scaler, dist_: Dist, device: torch.device, log: Callable[[str], None]
) -> tuple[int, dict | None, float]:
    """``(epochs done, best epoch's record, seconds trained)`` of the run's checkpoint, whose states
    are restored into the model, optimizer, scheduler, scaler and RNGs; ``(0, None, 0.0)`` without one."""
    if not run.checkpoint.exists():
        return 0, None, 0.0
    config = run.config
    state = runs.read_checkpoint(run.checkpoint, device)
    restore(run.checkpoint, state, model, optimizer, scheduler, scaler)
    distributed.restore_cuda_rng(state.get("cuda_rng"), dist_)
    start, elapsed = int(state["epoch"]), float(state["elapsed"])
    best = state.get("best")
    for group in optimizer.param_groups:  # the schedule is a function of the epoch (and --epochs)
        group["lr"] = config.lr_at(start)
    if dist_.main and start >= config.epochs:
        log(f"{run.directory} has trained {start} of {config.epochs} epochs already; nothing to do")
    elif dist_.main:
        log(f"resuming {run.directory} at epoch {start + 1} of {config.epochs}")
    return start, best, elapsed


def restore(path: Path, state: dict, model, optimizer, scheduler, scaler) -> None:
    """Load a checkpoint's states; one that does not fit this model or recipe is a RunError."""
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"].cpu())
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        reason = lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0]
        raise RunError(
            f"checkpoint does not fit the run: {reason[:200]}",
            Location(str(path)),
            hint="the checkpoint is from another spec or recipe, or damaged",
        ) from None


def save(
    run: Run,
    model,
    optimizer,
    scheduler,
    epoch: int,
    elapsed: float,
    best: dict,
    record: dict,
    scaler=None,
    cuda_rng: list[torch.Tensor] | None = None,
) -> None:
    """Append the epoch's metrics, then replace the checkpoint and the weights file (rank 0 only)."""
    # Metrics first: a crash in between leaves a metrics line for an epoch the checkpoint lacks,
    # which train() drops when it starts again (see trim_metrics), never the reverse.
    with (run.directory / METRICS).open("a") as handle:
        handle.write(json.dumps(record, allow_nan=False) + "\n")
    state = {
        "epoch": epoch,
        "elapsed": elapsed,
        "best": best,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": torch.get_rng_state(),
    }
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    if cuda_rng is not None:  # every rank's CUDA generator, in rank order
        state["cuda_rng"] = cuda_rng
    _atomic_write(run.checkpoint, lambda p: torch.save(state, p))
    artifacts.save_run_weights(run, model, epoch, record)  # model.safetensors: the weights, self-describing


def trim_metrics(path: Path, epochs: int) -> None:
    """Keep the metrics of the first ``epochs`` epochs (drop lines of an epoch lost in a crash)."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["epoch"] <= epochs]
    if len(kept) != len(lines):
        _atomic_write(path, lambda p: p.write_text("".join(line + "\n" for line in kept)))


def summary(run: Run, last: dict, best: dict | None) -> dict:
    """summary.json's contents: the last and the best epoch, and what config.json says the run is."""
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
        **validation.summary_keys(stored.get("validation"), best),
        **{k: v for k, v in stored.get("distributed", {}).items() if k in ("world_size", "per_rank_batch")},
        **({"experiment": stored["experiment"]} if "experiment" in stored else {}),
    }


def remove_start(directory: Path, created: Path | None, existed: set[str] = frozenset()) -> None:
    """Remove the files a run created before it saved a checkpoint, and the directories it created."""
    for name in runs.RUN_FILES:
        if name not in existed:
            (directory / name).unlink(missing_ok=True)
    if created is None:
        return
    for folder in (directory, *directory.parents):
        try:
            folder.rmdir()  # only when empty
        except OSError:
            return
        if folder == created:
            return
