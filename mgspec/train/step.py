"""One training step (forward, loss, backward, SGD update), eager or captured in a CUDA graph.

:func:`make_step` returns a callable ``step(images, labels) -> (loss_sum, correct)``: it trains
on one batch and returns the batch's summed loss (float64) and number of correct predictions as
0-dim tensors on the device, never reading them back to the host, so that a loop can add them
up on the device and read the totals once per epoch. ``benchmarks/`` and the trainer share it.

- **Eager** (:class:`EagerStep`): what PyTorch does call by call; any device, any batch shape.
- **CUDA graph** (:class:`GraphedStep`): forward, loss and backward are captured once into a
  CUDA graph and replayed, one launch instead of thousands. The SGD update stays outside the
  graph, as one fused (CUDA) step, so the learning-rate schedule is exactly the eager one.
  Capture needs static shapes: batches of the captured shape replay the graph, any other batch
  (an epoch's last, partial one) runs eagerly on the same weights, gradients and optimizer, so
  no image is dropped or padded. Warm-up runs on a side stream (cuDNN's autotuning, the
  allocator); the BatchNorm statistics it touches are restored afterwards, so capture changes
  no state: the first replay computes what the first eager step would.

:func:`configure_cuda` turns on TF32 matmuls and convolutions and ``cudnn.benchmark``;
:func:`make_optimizer` is the recipe's SGD, fused on CUDA.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mgspec.errors import SpecError

#: Eager steps on the side stream before capture (cuDNN autotuning, allocator warm-up).
WARMUP_STEPS = 3

Step = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def configure_cuda(device: torch.device | None = None) -> None:
    """TF32 for float32 matmuls and convolutions, and cuDNN's autotuner (a no-op without CUDA);
    with a CUDA ``device``, it becomes the current device (graph capture and streams use that)."""
    if not torch.cuda.is_available():
        return
    if device is not None and device.type == "cuda":
        torch.cuda.set_device(device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True


def make_optimizer(
    model: nn.Module, lr: float, momentum: float, weight_decay: float, device: torch.device
) -> torch.optim.SGD:
    """SGD with momentum: the fused implementation on CUDA (one kernel), torch's default elsewhere."""
    fused = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, **fused)


def _forward(model, loss_fn, images, labels, amp_dtype, device_type, cache=True):
    with torch.autocast(device_type, dtype=amp_dtype, enabled=amp_dtype is not None, cache_enabled=cache):
        logits = model(images)
        loss = loss_fn(logits, labels)
    return logits, loss


def _totals(logits: torch.Tensor, loss: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return loss.detach().double() * len(labels), (logits.detach().argmax(1) == labels).sum()


class EagerStep:
    """One eager training step; ``set_to_none=False`` keeps gradient tensors (zeroed) between steps."""

    def __init__(self, model, optimizer, loss_fn=F.cross_entropy, *, amp_dtype=None, scaler=None, set_to_none=True):
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.amp_dtype, self.scaler, self.set_to_none = amp_dtype, scaler, set_to_none
        self.graphed = False

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.optimizer.zero_grad(set_to_none=self.set_to_none)
        logits, loss = _forward(self.model, self.loss_fn, images, labels, self.amp_dtype, images.device.type)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return _totals(logits, loss, labels)


class GraphedStep:
    """Forward, loss and backward of ``example``'s shape captured in a CUDA graph; the update eager."""

    def __init__(self, model, optimizer, loss_fn, example: tuple[torch.Tensor, torch.Tensor], *, amp_dtype=None):
        images, labels = example
        self.model, self.optimizer = model, optimizer
        self.graphed = True
        self.images, self.labels = images.clone(), labels.clone()
        # Gradients live in the graph's memory from capture on; the eager fallback zeroes them in place.
        self.eager = EagerStep(model, optimizer, loss_fn, amp_dtype=amp_dtype, set_to_none=False)
        buffers = [b.detach().clone() for b in model.buffers()]
        try:
            self._capture(loss_fn, amp_dtype)
        finally:
            with torch.no_grad():  # warm-up moved the BatchNorm statistics; capture itself computed nothing
                for buffer, saved in zip(model.buffers(), buffers, strict=True):
                    buffer.copy_(saved)

    def _capture(self, loss_fn, amp_dtype) -> None:
        model, optimizer, images = self.model, self.optimizer, self.images
        optimizer.zero_grad(set_to_none=True)
        side = torch.cuda.Stream(device=images.device)
        side.wait_stream(torch.cuda.current_stream(images.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                _, loss = _forward(model, loss_fn, self.images, self.labels, amp_dtype, "cuda", cache=False)
                loss.backward()
                optimizer.zero_grad(set_to_none=True)
        torch.cuda.current_stream(images.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            logits, loss = _forward(model, loss_fn, self.images, self.labels, amp_dtype, "cuda", cache=False)
            loss.backward()
            self.loss_sum, self.correct = _totals(logits, loss, self.labels)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.shape != self.images.shape:
            return self.eager(images, labels)
        self.images.copy_(images)
        self.labels.copy_(labels)
        self.graph.replay()
        self.optimizer.step()
        return self.loss_sum.clone(), self.correct.clone()


def make_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable = F.cross_entropy,
    example_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    cuda_graph: bool = False,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> Step:
    """A training step for ``model`` (in training mode) and ``optimizer``.

    With ``cuda_graph`` (CUDA, no loss scaler, an ``example_batch`` of the shape to capture) the
    step is a :class:`GraphedStep`; otherwise an :class:`EagerStep`. Graph capture changes no
    state of the model or optimizer. ``amp_dtype`` is the autocast dtype (None: float32).
    """
    if not cuda_graph:
        return EagerStep(model, optimizer, loss_fn, amp_dtype=amp_dtype, scaler=scaler)
    if example_batch is None or example_batch[0].device.type != "cuda":
        raise ValueError("a CUDA-graph step needs an example batch on a CUDA device")
    if scaler is not None:
        raise ValueError("a CUDA-graph step does not take a loss scaler (float16 autocast)")
    return GraphedStep(model, optimizer, loss_fn, example_batch, amp_dtype=amp_dtype)


def choose_cuda_graphs(requested: bool | None, device: torch.device, world: int, compiled: bool, scaled: bool) -> bool:
    """Whether a run's step is a CUDA graph: ``--cuda-graphs`` as given (an impossible request is an
    error naming why), or by default wherever it can be: CUDA, one process, no ``--compile``, no
    float16 loss scaling."""
    why = [
        (device.type != "cuda", "it needs a CUDA device", "use --device cuda, or leave it out"),
        (world > 1, "it runs in one process only (DDP's gradient all-reduce is not captured)", "leave it out"),
        (compiled, "it does not combine with --compile", "use one of them"),
        (scaled, "float16 loss scaling is not captured", "use --amp-dtype bf16, or leave it out"),
    ]
    blocked = [(reason, hint) for cond, reason, hint in why if cond]
    if requested is None:
        return not blocked
    if requested and blocked:
        raise SpecError(f"--cuda-graphs: {blocked[0][0]}", hint=blocked[0][1])
    return requested


@torch.no_grad()
def eval_batch(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, amp_dtype=None):
    """Summed loss and correct predictions of one batch, as device tensors (model in eval mode)."""
    logits, loss = _forward(model, F.cross_entropy, images, labels, amp_dtype, images.device.type)
    return _totals(logits, loss, labels)
