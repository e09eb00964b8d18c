"""TensorBoard event files for a run directory, written from its metrics.jsonl (optional).

With ``study run --tensorboard`` every trial's learning curves go to ``<run>/tensorboard/``,
so ``tensorboard --logdir <out>/trials`` compares the trials side by side. It needs the
``tensorboard`` package; without it the option is refused before anything trains.
"""

from __future__ import annotations

import json
from pathlib import Path

from mgspec.errors import SpecError

SCALARS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr", "images_per_s")


def check_available() -> None:
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise SpecError(
            "--tensorboard needs the tensorboard package", hint="pip install 'mgspec[tensorboard]'"
        ) from None


def write_events(run_dir: str | Path) -> Path:
    """Write the run's epochs as TensorBoard scalars under ``run_dir/tensorboard`` (replacing what
    an earlier call wrote there)."""
    from torch.utils.tensorboard import SummaryWriter

    run_dir = Path(run_dir)
    target = run_dir / "tensorboard"
    for old in target.glob("events.out.tfevents.*"):  # written again: one file, every epoch once
        old.unlink()
    with SummaryWriter(str(target)) as writer:
        for line in (run_dir / "metrics.jsonl").read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                for name in SCALARS:
                    if name in record:
                        writer.add_scalar(name, record[name], record["epoch"])
    return target
