"""Training, evaluation and resumption; one process or DistributedDataParallel under torchrun.

A run directory holds everything needed to continue or audit a run:

- ``config.json``  the recipe, the spec text, the overrides and the spec's counts (what
  ``train --resume RUN`` and ``evaluate RUN`` read, so the spec need not be given again)
- ``metrics.jsonl`` one JSON object per epoch (train/test loss and accuracy, lr, time)
- ``checkpoint.pt`` model, optimizer, scheduler, RNG state and epoch, written atomically
  after every epoch (a killed run loses at most the epoch in progress)
- ``model.safetensors`` the weights alone, with metadata that says what they are
  (:mod:`mgspec.train.artifacts`), written after every epoch too
- ``summary.json``  weights, MACs, best/final accuracy, wall time, once the run ends

Checkpoints hold only tensors and plain containers and are read with ``weights_only=True``.
Under torchrun (``WORLD_SIZE > 1``) every rank trains on its shard of each epoch (the
sampler is distributed, see :mod:`mgspec.train.distributed`), metrics are summed over ranks,
and only rank 0 writes. On CUDA the data lives on the device (:mod:`mgspec.train.device_data`)
and the step may be a CUDA graph (:mod:`mgspec.train.step`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

import mgspec
from mgspec import runs
from mgspec.build import check_memory
from mgspec.errors import Location, RunError, SpecError
from mgspec.load import Source
from mgspec.schema import Spec
from mgspec.train import artifacts, distributed, validation
from mgspec.train.batches import EpochBatches
from mgspec.train.data import Split, dataset_info, load
from mgspec.train.device_data import DeviceBatches, DeviceSplit, fits_on_device, host_batches
from mgspec.train.distributed import Dist, init_distributed
from mgspec.train.distributed import finish_distributed as finish_distributed  # the CLI leaves runs with it
from mgspec.train.guards import out_of_memory, refuse_single_images
from mgspec.train.memory import tune_malloc
from mgspec.train.recipe import TrainConfig, check_device, fit_spec, uses_loss_scaling
from mgspec.train.step import Step, choose_cuda_graphs, configure_cuda, eval_batch, make_optimizer, make_step

CONFIG, METRICS, CHECKPOINT, SUMMARY = runs.CONFIG, runs.METRICS, runs.CHECKPOINT, runs.SUMMARY
aggregate = runs.aggregate


@dataclass
class Run:
    """A prepared run: where it lives, what it trains and how."""

    directory: Path
    config: TrainConfig
    spec_path: str | Path | Source  # a spec file, or its text (``-``, or the text a run stored)
    overrides: list[str]
    adapted: list[str] = field(default_factory=list)
    #: config.json's contents, written by :func:`train` once the model is built on its device.
    record: dict = field(default_factory=dict)

    @property
    def checkpoint(self) -> Path:
        return self.directory / CHECKPOINT


_atomic_write = runs.atomic_write


def _spec_record(spec_path: str | Path | Source, overrides: list[str], spec: Spec) -> dict:
    counts = mgspec.count_spec(spec)
    source = spec_path if isinstance(spec_path, Source) else None
    return {
        "path": source.name if source else str(spec_path),
        "text": source.text if source else Path(spec_path).read_text(),
        "overrides": overrides,
        "resolved": spec.model_dump(mode="json"),
        "weights": counts.total,
        "macs": counts.macs,
        "family": counts.family,
        "name": spec.name,
    }


def read_run(directory: str | Path) -> dict | None:
    """The validated ``config.json`` of a run directory (or of its first ``seed-*`` run), else None."""
    return runs.find_config(directory)


def stored_spec(run: dict) -> Source:
    """The spec a run was trained from, as its config.json holds it (errors name the original path)."""
    return mgspec.parse_text(run["spec"]["text"], run["spec"]["path"])


def finished_epochs(directory: str | Path) -> int:
    """Epochs a run directory's checkpoint holds (0 when there is none yet)."""
    path = Path(directory) / CHECKPOINT
    return runs.read_checkpoint(path)["epoch"] if path.exists() else 0


def prepare(
    spec_path: str | Path | Source,
    overrides: Sequence[str],
    config: TrainConfig,
    directory: str | Path,
    *,
    resume: bool = False,
    explicit: Sequence[str] = (),
    require_epochs_left: bool = False,
    experiment: dict | None = None,
) -> Run:
    """Create (or reopen with ``resume``) a run directory and check it fits the spec and recipe.

    ``explicit`` names the recipe options the user passed; on resume they must agree with the
    stored recipe, except the runtime ones (epochs, device, workers, ...). With
    ``require_epochs_left``, a run that has trained ``config.epochs`` epochs already is an error.
    ``experiment`` (e.g. the paper row a run reproduces) is recorded in config.json and
    summary.json; a resumed run keeps its own.
    """
    directory = Path(directory)
    spec_path = mgspec.registry.resolve(spec_path)  # a built-in model's name -> its file
    info = dataset_info(config.dataset)
    spec, full, adapted = fit_spec(spec_path, list(overrides), info)
    record = _spec_record(spec_path, full, spec)
    if resume:
        state = runs.read(directory)  # the whole directory is checked before anything is touched
        stored = state.config
        if stored["spec"]["resolved"] != record["resolved"]:
            raise SpecError(
                f"the run was trained from a different spec ({stored['spec']['path']} "
                f"with {stored['spec']['overrides'] or 'no overrides'})",
                Location(spec_path.name if isinstance(spec_path, Source) else str(spec_path)),
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
        runtime = {k: getattr(config, k) for k in TrainConfig.RUNTIME if k in explicit or k in ("data_dir", "threads")}
        config = TrainConfig.from_dict({**old.as_dict(), **runtime})
        done = state.epochs_done
        if require_epochs_left and done >= config.epochs:
            raise SpecError(
                f"the run has trained {done} epochs already; --epochs {config.epochs} leaves nothing to do",
                Location(str(directory)),
                hint=f"--epochs is the total, not a number more: e.g. --epochs {2 * done}",
            )
        experiment = experiment or stored.get("experiment")
    else:
        runs.check_fresh(directory)
    # A device that is not there, or a model that cannot fit it, is refused here, before any run starts.
    _check_memory(record["weights"], _device(config.device), str(spec_path))
    payload = {"mgspec": mgspec.__version__, "config": config.as_dict(), "spec": record}
    if experiment is not None:
        payload["experiment"] = experiment
    source = spec_path if isinstance(spec_path, Source) else str(spec_path)
    return Run(directory, config, source, full, adapted, payload)


def _device(name: str) -> torch.device:
    check_device(name)
    device = torch.device(distributed.resolve_device(name))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"--device {name}: CUDA is not available here", hint="use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise SpecError(f"--device {name}: there are {torch.cuda.device_count()} CUDA devices here")
    return device


#: Bytes per weight while training: the weight, its gradient, SGD's momentum and one spare copy.
TRAINING_BYTES_PER_WEIGHT = 16


def _check_memory(
    weights: int, device: torch.device, spec_path: str, bytes_per_weight: int = TRAINING_BYTES_PER_WEIGHT
) -> None:
    """Refuse a model whose weights alone cannot fit the device, before allocating anything."""
    check_memory(weights, Location(spec_path), bytes_per_weight, device)


def _epoch_pass(
    model: nn.Module,
    batches: EpochBatches | DeviceBatches,
    config: TrainConfig,
    device: torch.device,
    dist_: Dist,
    optimizer: torch.optim.Optimizer | None = None,
    advance: Callable[[], None] = lambda: None,
    scaler: torch.amp.GradScaler | None = None,
    step: Step | None = None,
) -> tuple[float, float, int]:
    """One pass; trains when given a ``step`` (or an optimizer, for an eager step). Returns loss,
    accuracy and images over all ranks.

    With ``config.amp`` the forward pass and the loss run under autocast in that dtype; a
    ``scaler`` (float16 on CUDA) scales the loss so that small gradients do not underflow. Loss
    and correct predictions are added up on the device and read once, at the end of the pass.
    """
    amp_dtype = getattr(torch, config.amp) if config.amp else None
    if step is None and optimizer is not None:
        step = make_step(model, optimizer, amp_dtype=amp_dtype, scaler=scaler)
    training = step is not None
    model.train(training)
    memory = torch.channels_last if config.channels_last else torch.contiguous_format
    source = batches if isinstance(batches, DeviceBatches) else host_batches(batches, config.workers, device, memory)
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    seen = 0
    with torch.set_grad_enabled(training):
        for images, labels in source:
            loss_sum, correct = step(images, labels) if training else eval_batch(model, images, labels, amp_dtype)
            totals[0] += loss_sum
            totals[1] += correct
            seen += len(labels)
            advance()
    loss_sum, correct, seen = dist_.sum([*totals.tolist(), seen])
    return loss_sum / max(seen, 1), correct / max(seen, 1), int(seen)


def _data_sources(config, info, train_split, test_split, device, dist_: Dist, per_rank: int, drop_single=False):
    """``(epoch -> training batches, test batches)``: resident on a CUDA device where the data fits
    (:class:`DeviceBatches`), else made on the host (:class:`EpochBatches`). ``drop_single`` drops an
    epoch's last batch when it holds one image (made on the host then)."""
    where = dict(rank=dist_.rank, world=dist_.world)
    if not drop_single and fits_on_device(train_split, device) and fits_on_device(test_split, device, share=0.1):
        memory = torch.channels_last if config.channels_last else torch.contiguous_format
        train_data, test_data = DeviceSplit(train_split, device), DeviceSplit(test_split, device)
        test = DeviceBatches(test_data, info, per_rank, train=False, memory_format=memory, **where)

        def on_device(epoch: int) -> DeviceBatches:
            return DeviceBatches(
                train_data, info, per_rank, train=True, seed=config.seed, epoch=epoch,
                max_batches=config.max_batches, memory_format=memory, **where,
            )  # fmt: skip

        return on_device, test

    def on_host(epoch: int) -> EpochBatches:
        batches = EpochBatches(train_split, info, per_rank, train=True, seed=config.seed, epoch=epoch, **where)
        if config.max_batches is not None:  # a smoke test: the first batches of the epoch's order only
            del batches.batches[config.max_batches :]
        if drop_single and len(batches.batches) > 1 and len(batches.batches[-1]) == 1:
            del batches.batches[-1]  # BatchNorm cannot train on one 1x1 map per channel
        return batches

    return on_host, EpochBatches(test_split, info, per_rank, train=False, **where)


def _hold_out(run: Run, data: Split, info, per_rank: int, dist_: Dist):
    """``(training split, validation batches or None)``; records the split in config.json and refuses
    a resumed run whose split differs."""
    kept, held, record = validation.hold_out(data, run.config.val_split, run.config.seed)
    if run.checkpoint.exists():
        validation.check_resume(read_run(run.directory), record, str(run.directory))
    run.record["validation"] = record
    if held is None:
        return kept, None
    return kept, EpochBatches(held, info, per_rank, train=False, rank=dist_.rank, world=dist_.world)


def _val_pass(model, batches, config: TrainConfig, device, dist_: Dist) -> dict:
    """``val_loss`` and ``val_acc`` of the held-out images (eval mode, like test); {} without a split."""
    if batches is None:
        return {}
    loss, accuracy, _ = _epoch_pass(model, batches, config, device, dist_)
    return {"val_loss": loss, "val_acc": accuracy}


def _train_step(model, optimizer, scaler, config: TrainConfig, device, per_rank: int, info, graphs: bool, log) -> Step:
    """The step of a run: captured in a CUDA graph at the per-rank batch shape when ``graphs``,
    else eager; a capture that fails falls back to eager steps, with one line saying why."""
    amp_dtype = getattr(torch, config.amp) if config.amp else None
    model.train(True)
    if graphs:
        memory = torch.channels_last if config.channels_last else torch.contiguous_format
        images = torch.zeros(per_rank, info.channels, info.size, info.size, device=device)
        example = (images.contiguous(memory_format=memory), torch.zeros(per_rank, dtype=torch.long, device=device))
        try:
            return make_step(model, optimizer, example_batch=example, cuda_graph=True, amp_dtype=amp_dtype)
        except Exception as exc:  # noqa: BLE001 - any capture failure leaves the eager step, which is exact
            log(f"warning: CUDA graph capture failed ({str(exc).splitlines()[0][:200]}); training eagerly")
            optimizer.zero_grad(set_to_none=True)
    return make_step(model, optimizer, amp_dtype=amp_dtype, scaler=scaler)


def _batch_size(config: TrainConfig, dist_: Dist) -> int:
    if config.batch_size % dist_.world:
        raise SpecError(f"--batch-size {config.batch_size} is not divisible by the {dist_.world} processes")
    return config.batch_size // dist_.world


def _make_model(run: Run, device: torch.device) -> nn.Module:
    torch.manual_seed(run.config.seed)
    try:
        model = mgspec.create_model(run.spec_path, run.overrides).to(device)
    except (MemoryError, torch.OutOfMemoryError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "out of memory"
        raise SpecError(
            f"the model does not fit the memory of {device}: {reason}",
            Location(run.spec_path),
            hint="reduce width, channels or steps",
        ) from None
    if run.config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def make_scaler(device_type: str, amp: str | None) -> torch.amp.GradScaler | None:
    """The loss scaler a run needs: one for float16 autocast on CUDA, none otherwise."""
    return torch.amp.GradScaler(device_type) if uses_loss_scaling(device_type, amp) else None


def train(run: Run, *, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Train to ``run.config.epochs`` (continuing from the checkpoint when there is one).

    The run directory is locked while training (a second process is refused). A run that fails
    before its first checkpoint (a bad device, a model too large, divergence in the first
    epoch, an interrupt) leaves nothing behind: the files and folders it created are removed,
    and nothing else.
    """
    main = int(os.environ.get("RANK", "0")) == 0
    created = run.directory
    while not created.parent.exists() and created.parent != created:
        created = created.parent
    created = created if not created.exists() else None
    existed = {name for name in runs.RUN_FILES if (run.directory / name).exists()}
    fresh = not run.checkpoint.exists()
    try:
        if not main:
            with out_of_memory(str(run.directory)):
                return _train(run, progress, log)
        run.directory.mkdir(parents=True, exist_ok=True)
        with runs.locked(run.directory), out_of_memory(str(run.directory)):
            return _train(run, progress, log)
    except BaseException:
        if fresh and not run.checkpoint.exists() and main:
            _remove_start(run.directory, created, existed)
        raise


def _remove_start(directory: Path, created: Path | None, existed: set[str] = frozenset()) -> None:
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


def _restore(path: Path, state: dict, model, optimizer, scheduler, scaler) -> None:
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


def _diverged(loss: float, classes: int) -> bool:
    """Non-finite, or a thousand times the loss of guessing (ln classes): no run recovers from that."""
    return not math.isfinite(loss) or loss > 1000 * math.log(max(classes, 2))


def _train(run: Run, progress: bool, log: Callable[[str], None]) -> dict:
    config = run.config
    if config.threads:
        torch.set_num_threads(config.threads)
    tune_malloc()
    dist_ = init_distributed(config.device)
    device = _device(distributed.rank_device(config.device, dist_.world))
    if device.type == "cuda":
        configure_cuda(device)
    if config.sync_bn:
        distributed.check_sync_bn(device)
    info = dataset_info(config.dataset)
    train_split, test_split = (
        load(config.dataset, config.data_dir, "train"),
        load(config.dataset, config.data_dir, "test"),
    )
    train_split, val_batches = _hold_out(run, train_split, info, _batch_size(config, dist_), dist_)
    _check_memory(run.record["spec"]["weights"], device, run.spec_path)
    model = _make_model(run, device)
    if config.sync_bn:
        distributed.convert_sync_batchnorm(model)
    per_rank = _batch_size(config, dist_)
    shape = (info.channels, info.size, info.size)
    shard = math.ceil(len(train_split) / dist_.world)  # images per process and epoch (the sampler pads)
    single = per_rank == 1 or shard % per_rank == 1  # only then can a batch hold one image
    drop_single = single and refuse_single_images(model, shape, device, per_rank, str(run.directory))
    if run.checkpoint.exists():
        distributed.check_world(read_run(run.directory), dist_, str(run.directory))
    epoch_batches, test_batches = _data_sources(
        config, info, train_split, test_split, device, dist_, per_rank, drop_single
    )
    compiled = config.compile_enabled(steps=config.epochs * len(epoch_batches(0)))
    scaler = make_scaler(device.type, config.amp)
    graphs = choose_cuda_graphs(config.cuda_graphs, device, dist_.world, compiled, scaler is not None)
    run.record["distributed"] = distributed.record(dist_, config.batch_size, config.sync_bn)
    run.record["step"] = {
        "cuda_graphs": graphs,
        "partial_batches": "eager" if graphs else "as they come",
        "compile": compiled,
        "data_on_device": isinstance(epoch_batches(0), DeviceBatches),
        "tf32": device.type == "cuda",
    }
    optimizer = make_optimizer(model, config.lr, config.momentum, config.weight_decay, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: config.lr_at(e) / config.lr)
    start, best, elapsed = 0, None, 0.0
    if run.checkpoint.exists():
        state = runs.read_checkpoint(run.checkpoint, device)
        _restore(run.checkpoint, state, model, optimizer, scheduler, scaler)
        distributed.restore_cuda_rng(state.get("cuda_rng"), dist_)
        start, elapsed = int(state["epoch"]), float(state["elapsed"])
        best = state.get("best")
        for group in optimizer.param_groups:  # the schedule is a function of the epoch (and --epochs)
            group["lr"] = config.lr_at(start)
        if dist_.main and start >= config.epochs:
            log(f"{run.directory} has trained {start} of {config.epochs} epochs already; nothing to do")
        elif dist_.main:
            log(f"resuming {run.directory} at epoch {start + 1} of {config.epochs}")
    if dist_.main:  # written only once the model, and a resumed run's checkpoint, are known to fit
        runs.write_json(run.directory / CONFIG, run.record)
        _trim_metrics(run.directory / METRICS, start)
    if drop_single and dist_.main and per_rank > 1:
        log("each epoch's last batch holds 1 image, which BatchNorm at 1x1 cannot train on: it is skipped")
    local = model
    if compiled:
        local = torch.compile(model)
    trained = local
    if dist_.world > 1:
        # The paper's level-1 R/Pi are weights no op uses; DDP must be told not to wait for their gradients.
        unused = mgspec.count(model.graph).unused > 0
        trained = nn.parallel.DistributedDataParallel(
            trained, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused
        )

    step = None
    record = None
    with _Progress(progress and dist_.main, config.epochs, len(epoch_batches(0)), start) as bar:
        for epoch in range(start, config.epochs):
            lr = optimizer.param_groups[0]["lr"]
            t0 = time.perf_counter()
            if step is None:
                step = _train_step(trained, optimizer, scaler, config, device, per_rank, info, graphs, log)
            train_loss, train_acc, images = _epoch_pass(
                trained, epoch_batches(epoch), config, device, dist_, advance=bar.advance, step=step
            )
            train_time = time.perf_counter() - t0
            scheduler.step()
            if dist_.world > 1:  # evaluate rank 0's BatchNorm statistics everywhere, without DDP's
                for buffer in model.buffers():  # per-forward collectives (test shards may differ in length)
                    dist.broadcast(buffer, 0)
            test_loss, test_acc, _ = _epoch_pass(local, test_batches, config, device, dist_)
            held = _val_pass(local, val_batches, config, device, dist_)
            elapsed += time.perf_counter() - t0
            losses = (train_loss, test_loss, held.get("val_loss", 0.0))
            if any(_diverged(loss, info.classes) for loss in losses):
                # The losses are summed over ranks, so every rank stops here together.
                saved = (
                    f"epoch {epoch} is saved in {run.checkpoint} (--resume {run.directory} continues it); "
                    if epoch > 0
                    else "no epoch was saved; "
                )
                raise RunError(
                    f"training diverged in epoch {epoch + 1}: train loss {train_loss:.3g}, test loss {test_loss:.3g}",
                    Location(str(run.directory)),
                    hint=f"{saved}a smaller --lr trains stably",
                )
            record = {
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "test_loss": test_loss,
                "test_acc": test_acc,
                **held,
                "images_per_s": images / train_time,
                "elapsed_s": elapsed,
            }
            best, improved = validation.update_best(best, record)
            cuda_rng = distributed.gather_cuda_rng(dist_)  # a collective: every rank takes part
            if dist_.main:
                _save(run, model, optimizer, scheduler, epoch + 1, elapsed, best, record, scaler, cuda_rng)
                if improved and held:  # the weights of the best epoch on validation
                    artifacts.save_run_weights(run, model, epoch + 1, record, name=validation.BEST_WEIGHTS)
            bar.epoch_done(record)
    if record is None:  # nothing left to train: report the stored run
        metrics = runs.read_metrics(run.directory / METRICS)
        if not metrics:
            raise RunError("the run has no metrics to report", Location(str(run.directory / METRICS)))
        record = metrics[-1]
    summary = _summary(run, record, best)
    if dist_.main:
        runs.write_json(run.directory / SUMMARY, summary)
    return summary


def _save(
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
    # Metrics first: a crash in between leaves a metrics line for an epoch the checkpoint lacks,
    # which train() drops when it starts again (see _trim_metrics), never the reverse.
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
        **validation.summary_keys(stored.get("validation"), best),
        **{k: v for k, v in stored.get("distributed", {}).items() if k in ("world_size", "per_rank_batch")},
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
    spec_path: str | Path | Source,
    overrides: Sequence[str],
    checkpoint: str | Path,
    dataset: str,
    data_dir: str | Path,
    *,
    batch_size: int = 256,
    device: str = "cpu",
    split: str = "test",
    threads: int | None = None,
) -> dict:
    """Loss and accuracy of a checkpoint (a run's ``checkpoint.pt`` or a bare state_dict)."""
    if threads:
        torch.set_num_threads(threads)
    info = dataset_info(dataset)
    _, full, _ = fit_spec(spec_path, list(overrides), info)
    dev = _device(device)
    graph = mgspec.compile_graph(spec_path, full)
    counts = mgspec.count(graph)
    _check_memory(counts.total, dev, str(spec_path), bytes_per_weight=4)
    model = mgspec.build_model(graph).to(dev)
    load_weights(model, checkpoint, dev, "evaluate with the spec and --set options the checkpoint was trained with")
    data: Split = load(dataset, data_dir, split)
    batches = EpochBatches(data, info, batch_size, train=False)
    config = TrainConfig(dataset=dataset, data_dir=str(data_dir), batch_size=batch_size, device=device)
    loss, accuracy, images = _epoch_pass(model, batches, config, dev, Dist())
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


def load_weights(model: nn.Module, checkpoint: str | Path, map_location, hint: str) -> Path:
    """Load a run directory's checkpoint, a checkpoint file or a state_dict into ``model``
    (``weights_only=True``); a file that does not fit the model is a located SpecError."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / CHECKPOINT
    if path.suffix == artifacts.SUFFIX:  # safetensors, checked against the model's spec first
        artifacts.check_spec(path, model.graph.graph["spec"])
        return artifacts.load(model, path, map_location)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
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
            f" (e.g. {(missing or unexpected)[0]})",
            Location(str(path)),
            hint=hint,
        )
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise SpecError(
            f"checkpoint does not fit the spec: {str(exc).splitlines()[-1].strip()}", Location(str(path))
        ) from None
    return path
