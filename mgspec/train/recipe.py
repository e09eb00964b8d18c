"""The paper's training recipe as defaults, and the spec fitted to a dataset.

SGD with momentum 0.9 and weight decay 1e-4, learning rate 0.05, batch 128. CIFAR: cosine
annealing over 400 epochs, random crop (4-pixel padding) and horizontal flip. (Fashion)MNIST:
the learning rate times 0.1 every 25 epochs; the paper gives no epoch count there, we default
to 100 (the rate is then 5e-6). The schedule is a pure function of the epoch, so a resumed
run needs no hidden scheduler state to continue exactly.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import mgspec
from mgspec.errors import SpecError
from mgspec.schema import Spec
from mgspec.train.data import DatasetInfo, dataset_info

#: The largest seed (torch, numpy and the data order all take it).
MAX_SEED = 2**32 - 1
#: Training steps from which ``--compile`` is on by default on CPU (the paper's recipe has 156,400).
COMPILE_MIN_STEPS = 5_000


@dataclass(frozen=True)
class TrainConfig:
    dataset: str
    data_dir: str
    epochs: int = 400
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # "cosine" (per epoch, to 0 at `epochs`) or "step"
    step_size: int = 25
    gamma: float = 0.1
    seed: int = 0
    max_batches: int | None = None  # train on the first N batches of each epoch only (a smoke test)
    val_split: float = 0.0  # fraction of each class held out for model selection (0: none, the paper's)
    # How to run, not what to compute: may change on --resume.
    device: str = "cpu"
    workers: int = 0
    compile: bool | None = None  # None: auto, see compile_enabled()
    channels_last: bool = True
    threads: int | None = None  # torch intra-op threads; None: default_threads()
    # Mixed precision: None (float32), "bfloat16" or "float16" (autocast; float16 with loss scaling).
    amp: str | None = None
    # BatchNorm over the global batch under torchrun (SyncBatchNorm; CUDA only): part of the recipe.
    sync_bn: bool = False
    # Whole-step CUDA-graph capture: None (auto: on for single-process CUDA runs), True, False.
    cuda_graphs: bool | None = None

    RUNTIME = ("data_dir", "device", "workers", "compile", "channels_last", "epochs", "threads", "cuda_graphs")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def compile_enabled(self, steps: int) -> bool:
        """``--compile`` as given, or automatically on for runs long enough to repay compilation.

        On this project's 2-core CPU reference machine, compiling MGiaD for training takes about two
        minutes and saves about a fifth of every step (docs/performance.md); from
        :data:`COMPILE_MIN_STEPS` steps on, the saving outweighs the compile time. On CUDA it is
        off: measured on an H200, it compiled MGiaD for 80-110 s and its step was slower than eager.
        """
        if self.compile is not None:
            return self.compile
        return not self.device.startswith("cuda") and steps >= COMPILE_MIN_STEPS

    def lr_at(self, epoch: int) -> float:
        """The learning rate of (0-based) ``epoch``."""
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1 + math.cos(math.pi * epoch / self.epochs))
        return self.lr * self.gamma ** (epoch // self.step_size)


def recipe(dataset: str, data_dir: str | Path, **given) -> TrainConfig:
    """The paper's recipe for ``dataset``; ``given`` (options the user set, None = unset) wins.

    ``amp`` may be given as ``True`` (the device's default half type, see :func:`amp_dtype`),
    ``"bf16"``/``"bfloat16"`` or ``"fp16"``/``"float16"``; ``threads`` defaults to
    :func:`default_threads` and may not exceed :func:`available_cores`.
    """
    info = dataset_info(dataset)
    defaults: dict = {}
    if info.format == "idx":
        defaults = {"schedule": "step", "epochs": 100}
    config = TrainConfig(dataset=dataset, data_dir=str(data_dir), **defaults)
    config = replace(config, **{k: v for k, v in given.items() if v is not None and k != "amp"})
    check_device(config.device)
    if config.device == "auto":  # recorded as the device it chose
        from mgspec.train.distributed import resolve_device

        config = replace(config, device=resolve_device("auto"))
    amp = given.get("amp")
    if amp is not None and amp is not False:
        config = replace(config, amp=amp_dtype(config.device, None if amp is True else amp))
    if config.threads is None:
        config = replace(config, threads=default_threads())
    _check(config)
    return config


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """``$OMP_NUM_THREADS`` when set, else every core this process may use; never more than those cores."""
    cores = available_cores()
    try:
        wanted = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        wanted = cores
    return max(1, min(wanted, cores))


def oversubscription(threads: int, cores: int, load: float) -> str | None:
    """A warning when ``threads`` beside the machine's other work (``load``: runnable processes,
    the 1-minute load average) need more cores than there are, else None.

    Spinning OpenMP threads that share cores with a busy process slow down many times over:
    ResNet20 fell from 146 to 44 images/s with 2 threads on 2 cores beside one busy process.
    """
    if load + threads <= cores + 0.5:
        return None
    free = max(1, cores - round(load))
    advice = f"try --threads {free}" if free < threads else "expect it to run slower"
    return (
        f"the machine is busy (load {load:.1f} on {cores} cores): {threads} training threads beside it "
        f"oversubscribe the cores and may run several times slower; {advice}"
    )


_AMP_NAMES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16"}


def amp_dtype(device: str, requested: str | None = None, *, bf16_supported: bool | None = None) -> str:
    """The autocast dtype for ``--amp`` on ``device``: bfloat16 on CPU; on CUDA bfloat16 where the GPU
    supports it, else float16. ``requested`` (bf16 or fp16) picks one; float16 needs CUDA.
    """
    is_cuda = device.startswith("cuda")
    if requested is not None:
        if requested not in _AMP_NAMES:
            raise SpecError(f"unknown --amp-dtype {requested!r}", hint="use bf16 or fp16")
        name = _AMP_NAMES[requested]
        if name == "float16" and not is_cuda:
            raise SpecError("--amp-dtype fp16 needs --device cuda", hint="on CPU, --amp uses bf16")
        return name
    if not is_cuda:
        return "bfloat16"
    if bf16_supported is None:
        import torch

        bf16_supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return "bfloat16" if bf16_supported else "float16"


def uses_loss_scaling(device_type: str, amp: str | None) -> bool:
    """float16 gradients underflow without loss scaling (a GradScaler); bfloat16 has float32's range."""
    return amp == "float16" and device_type == "cuda"


#: Most epochs of a training (the paper's recipe trains 400).
MAX_EPOCHS = 100_000


def _check(config: TrainConfig) -> None:
    for name in ("epochs", "batch_size"):
        if getattr(config, name) < 1:
            raise SpecError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(config, name)}")
    if config.epochs > MAX_EPOCHS:
        raise SpecError(f"--epochs {config.epochs:,}: at most {MAX_EPOCHS:,}", hint="the paper's recipe trains 400")
    if not 0 <= config.seed <= MAX_SEED:
        raise SpecError(f"--seed {config.seed}: seeds are 0 to {MAX_SEED:,}")
    images = dataset_info(config.dataset).train_images
    if config.batch_size > images:
        raise SpecError(
            f"--batch-size {config.batch_size:,} is larger than the {images:,} images of the training set",
            hint=f"use at most {images:,}",
        )
    if config.max_batches is not None and config.max_batches < 1:
        raise SpecError(f"--max-batches must be at least 1, not {config.max_batches}")
    # NaN passes every comparison, so finiteness is checked first.
    if not (math.isfinite(config.lr) and config.lr > 0):
        raise SpecError(f"--lr must be a finite positive number, not {config.lr}")
    if not (math.isfinite(config.weight_decay) and config.weight_decay >= 0):
        raise SpecError(f"--weight-decay must be a finite number >= 0, not {config.weight_decay}")
    for name in ("momentum", "gamma"):
        if not math.isfinite(getattr(config, name)):
            raise SpecError(f"{name} must be a finite number, not {getattr(config, name)}")
    from mgspec.train.validation import check_fraction

    check_fraction(config.val_split)
    if config.schedule not in ("cosine", "step"):
        raise SpecError(f"unknown schedule {config.schedule!r}", hint="use cosine or step")
    cores = available_cores()
    if config.threads is not None and not 1 <= config.threads <= cores:
        raise SpecError(
            f"--threads {config.threads}: this process may use {cores} cores",
            hint=f"use 1 to {cores} threads (default {default_threads()})",
        )
    check_device(config.device)


def check_device(name: str) -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (whether CUDA is there is checked when the run starts)."""
    if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", name):
        raise SpecError(f"unknown device {name!r}", hint="use auto, cpu, cuda or cuda:N")


_DATASET_FIELDS = {"input.channels": "channels", "input.size": "size", "classes": "classes"}


def fit_spec(spec_path: str | Path, overrides: Sequence[str], info: DatasetInfo) -> tuple[Spec, list[str], list[str]]:
    """Validate the spec with the dataset's input channels, size and classes.

    A shipped CIFAR-10 spec trains on FashionMNIST as the paper does: fields the user did not
    override are set from the dataset (and reported); an explicit override that contradicts
    the dataset is an error. Returns the spec, the full override list and the adaptations.
    """
    spec, _ = mgspec.load_spec(spec_path, overrides)
    explicit = {o.split("=", 1)[0].strip() for o in overrides}
    values = {"input.channels": spec.input.channels, "input.size": spec.input.size, "classes": spec.classes}
    added = []
    for path, attr in _DATASET_FIELDS.items():
        want = getattr(info, attr)
        if values[path] == want:
            continue
        if path in explicit:
            raise SpecError(
                f"{path}={values[path]} does not fit {info.title} ({attr}: {want})",
                mgspec.Location(f"--set {path}"),
                path,
                hint=f"drop the override; mgspec sets {path}={want} for {info.title}",
            )
        added.append(f"{path}={want}")
    if not added:
        return spec, list(overrides), []
    full = [*overrides, *added]
    spec, _ = mgspec.load_spec(spec_path, full)
    return spec, full, added
