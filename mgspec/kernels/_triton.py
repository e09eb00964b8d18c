"""Where the Triton kernels run: CUDA tensors when triton imports, and CPU tensors under
Triton's interpreter (``TRITON_INTERPRET=1``, slow, for tests). Importing triton is deferred
to the first tensor that could use it, so a CPU process never pays for it; a missing or
broken triton is remembered, never raised: callers then use their PyTorch path.
"""

from __future__ import annotations

import os

import torch

_state: dict[str, bool] = {}


def importable() -> bool:
    """Whether ``import triton`` succeeds here (tried once per process)."""
    if "ok" not in _state:
        try:
            import triton  # noqa: F401
            import triton.language  # noqa: F401

            _state["ok"] = True
        except Exception:  # ImportError, or a triton that does not match this torch
            _state["ok"] = False
    return _state["ok"]


def interpreting() -> bool:
    """Whether Triton runs in its CPU interpreter in this process (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "on", "yes")


def runs_on(t: torch.Tensor) -> bool:
    """Whether the Triton kernels run for tensors like ``t``: enabled, triton importable, and
    ``t`` on CUDA (or on the CPU under the interpreter)."""
    from mgspec import kernels

    if not kernels.enabled():
        return False
    if t.device.type == "cuda" or (t.device.type == "cpu" and interpreting()):
        return importable()
    return False


def _suggest(t: torch.Tensor) -> torch.memory_format:
    """The memory format torch gives a convolution's output for input ``t``."""
    try:
        from torch._prims_common import suggest_memory_format
    except ImportError:  # pragma: no cover - present in every torch mgspec supports
        return torch.contiguous_format if t.is_contiguous() else torch.channels_last
    return suggest_memory_format(t)


def layout(t: torch.Tensor) -> tuple[torch.Tensor, torch.memory_format, tuple[int, int, int]]:
    """``t`` (N, C, H, W) as (N, C, S = H*W) strides, with the memory format an output of the same
    layout gets: channels_last stays channels_last, anything not mergeable becomes contiguous."""
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and _suggest(t) == torch.channels_last:
        return t, torch.channels_last, (t.stride(0), t.stride(1), t.stride(3))
    t = t.contiguous()
    return t, torch.contiguous_format, (t.stride(0), t.stride(1), 1)
