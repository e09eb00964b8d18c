"""A validation split held out of the training set, for honest model selection.

``split`` takes the same fraction of every class (rounded per class, so 0.1 of CIFAR-10's
50,000 balanced images is exactly 5,000), in an order fixed by the seed alone (its own
generator, never the global one). The best epoch is picked on validation accuracy; with
fraction 0 (the paper's protocol) there is no split and the best epoch is the best on test.
"""

from __future__ import annotations

import hashlib
import math

import torch

from mgspec.errors import Location, SpecError
from mgspec.train.data import Split

OPTION = "--val-split"
BEST_WEIGHTS = "best.safetensors"


def check_fraction(fraction: float) -> None:
    """0 <= fraction < 1 (NaN is refused), located at ``--val-split``."""
    if not (math.isfinite(fraction) and 0 <= fraction < 1):
        raise SpecError(
            f"{OPTION} must be at least 0 and less than 1, not {fraction}",
            Location(OPTION),
            hint="e.g. 0.1 holds out a tenth of each class; 0 trains on the whole training set",
        )


def _held(count: int, fraction: float) -> int:
    return math.floor(count * fraction + 0.5)  # round half up, never to even


def split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train_idx, val_idx)``, sorted and disjoint: ``fraction`` of each class (rounded) goes to validation."""
    check_fraction(fraction)
    labels = torch.as_tensor(labels).long()
    generator = torch.Generator().manual_seed(seed)
    train, val = [], []
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        held = _held(len(members), fraction)
        if fraction > 0 and held >= len(members):
            raise SpecError(
                f"{OPTION} {fraction} leaves class {cls} ({len(members)} images) no training image",
                Location(OPTION),
                hint="use a smaller fraction",
            )
        order = members[torch.randperm(len(members), generator=generator)]
        val.append(order[:held])
        train.append(order[held:])
    val_idx = torch.sort(torch.cat(val)).values if val else torch.zeros(0, dtype=torch.long)
    train_idx = torch.sort(torch.cat(train)).values if train else torch.zeros(0, dtype=torch.long)
    if fraction > 0 and len(val_idx) == 0:
        raise SpecError(
            f"{OPTION} {fraction} holds out no image of the {len(labels)} training images",
            Location(OPTION),
            hint="use a larger fraction, or 0 for no validation split",
        )
    return train_idx, val_idx


def digest(val_idx: torch.Tensor) -> str:
    """A short hash of the validation indices (what a resumed run must hold out again)."""
    data = torch.as_tensor(val_idx).long().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


def hold_out(data: Split, fraction: float, seed: int) -> tuple[Split, Split | None, dict]:
    """``(training split, validation split or None, record for config.json)``."""
    if fraction == 0:
        return data, None, {"split": 0.0, "images": 0, "hash": None}
    train_idx, val_idx = split(data.labels, fraction, seed)
    record = {"split": fraction, "images": len(val_idx), "hash": digest(val_idx)}
    return (
        Split(data.images[train_idx], data.labels[train_idx]),
        Split(data.images[val_idx], data.labels[val_idx]),
        record,
    )


def check_resume(stored: dict | None, record: dict, directory: str) -> None:
    """A resumed run must hold out the same images it started with."""
    old = (stored or {}).get("validation", {"hash": None})
    if old.get("hash") != record["hash"]:
        raise SpecError(
            f"the validation split differs from the run's ({old.get('split', 0.0)}, hash {old.get('hash')}; "
            f"now {record['split']}, hash {record['hash']})",
            Location(OPTION),
            hint=f"resume {directory} with the training data and {OPTION} it started with",
        )


def update_best(best: dict | None, record: dict) -> tuple[dict, bool]:
    """The best epoch so far, on ``val_acc`` when the record has it, else on ``test_acc``; and whether it changed."""
    key = "val_acc" if "val_acc" in record else "test_acc"
    if best is not None and key in best and record[key] <= best[key]:
        return best, False
    kept = ("epoch", "test_acc", "val_acc")
    return {k: record[k] for k in kept if k in record}, True


def summary_keys(validation: dict | None, best: dict | None) -> dict:
    """The summary's selection keys (best_val_acc only with a split)."""
    validation = validation or {"split": 0.0, "images": 0}
    keys = {"val_split": validation["split"], "val_images": validation["images"]}
    if validation["split"] > 0:
        keys["best_val_acc"] = best.get("val_acc") if best else None
        keys["selected_on"] = "val"
    else:
        keys["selected_on"] = "test"
    return keys
