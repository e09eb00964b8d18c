"""The progress bar of a run: all batches of the remaining epochs, with ETA, and one line per epoch.

Only rank 0 shows it, and only without ``--quiet``; rich is imported when it is shown.
"""

from __future__ import annotations


class EpochProgress:
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
