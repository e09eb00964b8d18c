"""One pass over a dataset (training or evaluating) and the evaluation of a stored checkpoint.

:func:`epoch_pass` is the inner loop of both training and ``mgspec evaluate``: loss and correct
predictions are added up on the device and read once, at the end of the pass, then summed over
the ranks of a distributed run. :func:`load_weights` reads every kind of weights file a user
may give (a run directory, a checkpoint, a bare state_dict, safetensors) with located errors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

import mgspec
from mgspec import runs
from mgspec.errors import Location, SpecError
from mgspec.load import Source
from mgspec.train import artifacts
from mgspec.train.batches import EpochBatches
from mgspec.train.data import Split, dataset_info, load
from mgspec.train.device_data import DeviceBatches, host_batches
from mgspec.train.distributed import Dist
from mgspec.train.recipe import TrainConfig, fit_spec
from mgspec.train.rundir import check_fits, training_device
from mgspec.train.step import Step, eval_batch, make_step

CHECKPOINT = runs.CHECKPOINT


def epoch_pass(
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
    dev = training_device(device)
    graph = mgspec.compile_graph(spec_path, full)
    counts = mgspec.count(graph)
    check_fits(counts.total, dev, str(spec_path), bytes_per_weight=4)
    model = mgspec.build_model(graph).to(dev)
    load_weights(model, checkpoint, dev, "evaluate with the spec and --set options the checkpoint was trained with")
    data: Split = load(dataset, data_dir, split)
    batches = EpochBatches(data, info, batch_size, train=False)
    config = TrainConfig(dataset=dataset, data_dir=str(data_dir), batch_size=batch_size, device=device)
    loss, accuracy, images = epoch_pass(model, batches, config, dev, Dist())
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
