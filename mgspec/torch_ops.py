"""The torch bodies of the ops that are more than one torch call (torch-only).

:mod:`mgspec.ops` names these functions as the ops' callables; the runtime backend calls
them. Classes here (a module a weight slot builds) are also copied, as written, into a
generated file that uses them, so both backends run the same code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def shortcut_a(x: torch.Tensor, cout: int) -> torch.Tensor:
    """ResNet option A: subsample by 2 and zero-pad the new channels evenly on both sides."""
    extra = cout - x.shape[1]
    return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, extra // 2, extra - extra // 2))


def avgpool2(x: torch.Tensor, cout: int) -> torch.Tensor:
    """Restriction by 2x2 averaging; channels repeated (each input channel feeds cout / cin outputs)."""
    y = F.avg_pool2d(x, 2, ceil_mode=True)
    return y if cout == x.shape[1] else y.repeat_interleave(cout // x.shape[1], 1)


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of each pixel of an N x C x H x W tensor (channels last), affine."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
