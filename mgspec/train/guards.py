"""Run-time conditions a run cannot train through, turned into one located message.

- **Memory.** PyTorch reports exhausted CPU memory as a ``RuntimeError`` (``DefaultCPUAllocator:
  can't allocate memory``), CUDA's as ``torch.OutOfMemoryError``, Python's as ``MemoryError``:
  :func:`out_of_memory` turns each into a :class:`~mgspec.errors.RunError` naming the place.
- **Single images at BatchNorm.** In training, BatchNorm needs more than one value per channel;
  a level whose feature maps are 1x1 sees one value per image. :func:`refuse_single_images`
  refuses a batch size of 1 for such a model before anything is written, and tells the
  trainer to drop an epoch's last batch when it would hold a single image (said once).
- **Signals.** :func:`sigterm_as_interrupt` makes SIGTERM (what schedulers and ``kill`` send)
  stop a run as Ctrl-C does: cleaned up before the first checkpoint, resumable after it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

import torch
from torch import nn

from mgspec.errors import Location, RunError

_OOM_TEXTS = ("can't allocate memory", "out of memory", "not enough memory")


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(t in str(exc).lower() for t in _OOM_TEXTS)


@contextlib.contextmanager
def out_of_memory(where: str, hint: str = "reduce --batch-size, the width or the channels") -> Iterator[None]:
    """Exhausted memory inside the block becomes one RunError located at ``where``."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "out of memory"
        raise RunError(f"out of memory: {reason}", Location(where), hint=hint) from None


def smallest_norm_map(model: nn.Module, shape: tuple[int, ...], device: torch.device) -> int | None:
    """The fewest pixels per channel any BatchNorm of ``model`` sees for one image (None: no BatchNorm)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return None
    seen: list[int] = []
    hooks = [
        m.register_forward_pre_hook(lambda _m, args: seen.append(args[0][0].numel() // args[0].shape[1])) for m in norms
    ]
    was_training = model.training
    try:
        model.eval()  # eval mode: running statistics are read, not updated
        with torch.no_grad():
            model(torch.zeros(1, *shape, device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return min(seen) if seen else None


def refuse_single_images(
    model: nn.Module, shape: tuple[int, ...], device: torch.device, per_rank: int, where: str
) -> bool:
    """Refuse a per-process batch of 1 where a BatchNorm sees 1x1 maps; True: drop last batches of 1."""
    pixels = smallest_norm_map(model, shape, device)
    if pixels is None or pixels > 1:
        return False
    if per_rank == 1:
        raise RunError(
            "a batch of 1 image per process cannot train: a BatchNorm of this model sees 1x1 feature maps, "
            "and needs more than one value per channel",
            Location(where),
            hint="use --batch-size 2 or more per process",
        )
    return True


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be (exit status 143)."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block (in the main thread), SIGTERM raises :class:`Terminated`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame) -> None:
        raise Terminated()

    previous: Callable | int | None = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
