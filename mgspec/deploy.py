"""Deployment: a built model as an inference graph with BatchNorm folded, and as an ONNX file.

BatchNorm is folded on the graph that ``torch.export`` traces, not on the ``nn.Module``: in the
runtime model one convolution module may be applied several times (shared weights, e.g. MGiaD's
A and B on every level) with a different BatchNorm after each application, so no module-level
rewrite is correct in general. The traced graph has one ``conv2d`` node per application; every
``conv2d -> batch_norm`` pair whose convolution output feeds only that BatchNorm (in eval mode)
becomes one ``conv2d`` with its own folded weight and bias, which works the same for the runtime
model, a generated model or any exportable module.

``export_onnx`` writes the file only after it has been checked: with ``onnx.checker`` when onnx
is installed, and against the PyTorch model on random inputs in ONNX Runtime when that is
installed. It writes to a temporary name beside the target and renames it into place, so a
failure leaves no partial file behind.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mgspec.errors import Location, SpecError

#: The ONNX opset written by default (ONNX Runtime has supported it since 1.14).
DEFAULT_OPSET = 18


def load_run_weights(model: nn.Module, run: str | Path) -> Path:
    """Load a run directory's ``checkpoint.pt`` (or a checkpoint/state_dict file) into ``model``."""
    from mgspec.train.trainer import load_weights

    return load_weights(model, run, "cpu", "export with the spec and --set options the run was trained with")


def run_overrides(run: Path | None, set_: list[str] | None) -> tuple[list[str], str | None]:
    """What an export takes from ``--run``: the --set options to build the model with (the given
    ones, else the run's or the weights file's) and the dataset it was trained on."""
    overrides, dataset = list(set_ or []), None
    if run is None:
        return overrides, None
    if run.is_file() and run.suffix == ".safetensors":
        from mgspec.train import artifacts

        info = artifacts.describe_file(run)
        return overrides or list(info.get("spec_overrides") or []), info.get("dataset")
    from mgspec.train.trainer import read_run

    stored = read_run(run) if run.exists() else None
    if stored is not None:
        dataset = (stored.get("config") or {}).get("dataset")
        if not set_:
            overrides = list((stored.get("spec") or {}).get("overrides") or [])
    return overrides, dataset


def export_spec(
    spec,
    out: str | Path,
    set_: list[str] | None = None,
    *,
    run: Path | None = None,
    dataset: str | None = None,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    batch: int = 1,
    embed_normalization: bool = False,
    where: str | None = None,
) -> ExportReport:
    """``mgspec export``: build ``spec`` (with ``run``'s weights, and its --set options unless
    ``set_`` gives some) and export it with :func:`export_onnx`, with the metadata of ``dataset``
    (default: the run's, else the spec's fit). ``where`` names the spec in out-of-memory errors."""
    import mgspec
    from mgspec import describe
    from mgspec.train.guards import out_of_memory

    overrides, trained_on = run_overrides(run, set_)
    graph = mgspec.compile_graph(spec, overrides)
    with out_of_memory(where or str(spec), hint="reduce width, channels or --batch-size"):
        model = mgspec.build_model(graph)
    if run is not None:
        load_run_weights(model, run)
    s = graph.graph["spec"]
    metadata = describe.onnx_metadata(graph, dataset or trained_on, raw_pixels=embed_normalization)
    facts = describe.preprocessing(s, dataset or trained_on)
    with out_of_memory(str(out), hint="reduce --batch-size, width or channels"):
        return export_onnx(
            model,
            out,
            input_shape=(s.input.channels, *s.input.shape),
            opset=opset,
            dynamic_batch=dynamic_batch,
            batch=batch,
            metadata=metadata,
            normalization=(facts.mean, facts.std) if embed_normalization else None,
        )


def _attr(gm: torch.fx.GraphModule, node) -> torch.Tensor | None:
    if node is None:
        return None
    if not isinstance(node, torch.fx.Node) or node.op != "get_attr":
        raise LookupError
    value = gm
    for part in node.target.split("."):
        value = getattr(value, part)
    return value.detach()


def fold_batchnorm(gm: torch.fx.GraphModule) -> int:
    """Fold every eval-mode ``conv2d -> batch_norm`` pair of an exported graph; returns how many."""
    conv, bn = torch.ops.aten.conv2d.default, torch.ops.aten.batch_norm.default
    folded = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not bn:
            continue
        source = node.args[0]
        training = node.args[5] if len(node.args) > 5 else node.kwargs.get("training", True)
        if not (isinstance(source, torch.fx.Node) and source.target is conv and len(source.users) == 1) or training:
            continue
        try:
            weight = _attr(gm, source.args[1])
            bias = _attr(gm, source.args[2] if len(source.args) > 2 else None)
            gamma, beta, mean, var = (_attr(gm, a) for a in node.args[1:5])
        except LookupError:  # parameters that are not plain attributes: leave this pair alone
            continue
        if mean is None or var is None:
            continue
        eps = float(node.args[7] if len(node.args) > 7 else node.kwargs.get("eps", 1e-5))
        scale = torch.rsqrt(var.double() + eps) * (gamma.double() if gamma is not None else 1.0)
        new_weight = (weight.double() * scale.reshape(-1, 1, 1, 1)).to(weight.dtype)
        shift = beta.double() if beta is not None else torch.zeros_like(scale)
        new_bias = (shift + ((bias.double() if bias is not None else 0.0) - mean.double()) * scale).to(weight.dtype)
        name = f"folded_bn_{folded}"
        gm.register_buffer(f"{name}_weight", new_weight)
        gm.register_buffer(f"{name}_bias", new_bias)
        with gm.graph.inserting_before(source):
            w_node = gm.graph.get_attr(f"{name}_weight")
            b_node = gm.graph.get_attr(f"{name}_bias")
        args = list(source.args) + [None] * (3 - len(source.args))
        args[1], args[2] = w_node, b_node
        source.args = tuple(args)
        node.replace_all_uses_with(source)
        gm.graph.erase_node(node)
        folded += 1
    gm.graph.eliminate_dead_code()
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name, _ in list(gm.named_parameters()) + list(gm.named_buffers()):
        if name not in used:
            owner_path, _, leaf = name.rpartition(".")
            owner = gm.get_submodule(owner_path) if owner_path else gm
            delattr(owner, leaf)
    gm.recompile()
    return folded


def inference_graph(
    model: nn.Module, example: torch.Tensor, dynamic_batch: bool = False
) -> tuple[torch.fx.GraphModule, int]:
    """``model`` (eval mode) traced by ``torch.export`` with BatchNorm folded; (graph, folded pairs)."""
    model = model.eval()
    with torch.no_grad():
        gm = torch.export.export(model, (example,), dynamic_shapes=_dynamic(dynamic_batch)).module()
    return gm, fold_batchnorm(gm)


def _dynamic(dynamic_batch: bool):
    return ({0: torch.export.Dim("batch", min=1, max=65536)},) if dynamic_batch else None


@dataclass
class ExportReport:
    path: Path
    opset: int
    folded: int
    dynamic_batch: bool
    checks: list[str] = field(default_factory=list)
    max_error: float | None = None


@contextlib.contextmanager
def _quiet_exporters():
    """The exporters' progress logging and deprecation warnings stay off the command's output."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def export_onnx(
    model: nn.Module,
    out: str | Path,
    *,
    input_shape: tuple[int, int, int],
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    batch: int = 2,
    trials: int = 3,
    seed: int = 0,
    metadata: dict[str, str] | None = None,
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
) -> ExportReport:
    """Export ``model`` (BatchNorm folded) to ONNX at ``out``, checked before it is written.

    ``input_shape`` is (channels, height, width); the file's batch size is ``batch`` unless
    ``dynamic_batch``. ``metadata`` is written as the model's ``metadata_props``; with
    ``normalization`` (mean, std of pixels in [0, 1]) the graph takes raw pixels in [0, 255] and
    normalises them itself. Raises :class:`SpecError` (nothing written) when a check fails.
    """
    out = Path(out)
    if normalization is not None:
        model = Normalized(model, *normalization)
    if out.parent and not out.parent.is_dir():
        raise SpecError("no such directory", Location(str(out.parent)))
    if not _installed("onnxscript") or not _installed("onnx"):
        raise SpecError(
            "ONNX export needs the onnx and onnxscript packages", hint="pip install 'mgspec[onnx]' (or onnx onnxscript)"
        )
    torch.manual_seed(seed)
    model = model.eval()
    # a batch of 1 would be specialised by the tracer: trace a dynamic batch with 2
    example = torch.randn(max(batch, 2) if dynamic_batch else batch, *input_shape)
    onnx_program, folded = _onnx_program(model, example, dynamic_batch, opset)
    report = ExportReport(out, opset, folded, dynamic_batch)
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx", prefix=f".{out.stem}-", dir=out.parent or ".")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        onnx_program.save(str(tmp))
        _check_file(tmp, report, metadata)
        if _installed("onnxruntime"):
            report.max_error = _compare_onnxruntime(tmp, model, input_shape, batch, dynamic_batch, trials)
            report.checks.append("onnxruntime")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return report


def _onnx_program(model: nn.Module, example: torch.Tensor, dynamic_batch: bool, opset: int):
    """``(the ONNX program of model with BatchNorm folded, folded pairs)``; folding is checked on
    ``example`` first, and the exporters' own errors become one-line SpecErrors."""
    try:
        with _quiet_exporters():
            gm, folded = inference_graph(model, example, dynamic_batch)
        with torch.no_grad():
            want, got = model(example), gm(example)
        if not torch.allclose(got, want, rtol=1e-4, atol=1e-4 * (want.abs().max().item() + 1.0)):
            raise SpecError("folding BatchNorm changed the model's outputs", hint="please report this with the spec")
        with torch.no_grad(), _quiet_exporters():
            program = torch.export.export(gm, (example,), dynamic_shapes=_dynamic(dynamic_batch))
            return torch.onnx.export(program, dynamo=True, opset_version=opset, verbose=False), folded
    except SpecError:
        raise
    except Exception as exc:  # the exporters' own errors: one line, not their traceback
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise SpecError(f"export failed: {exc.__class__.__name__}: {message}", hint=f"opset {opset}") from None


def _check_file(tmp: Path, report: ExportReport, metadata: dict[str, str] | None) -> None:
    """Write ``metadata`` into the saved file, give it the umask's permissions and check it with
    ``onnx.checker``, including that it holds the opset asked for."""
    import onnx

    if metadata:
        _write_metadata(onnx, tmp, metadata)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)
    proto = onnx.load(str(tmp))
    onnx.checker.check_model(proto, full_check=True)
    written = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=None)
    if written != report.opset:
        raise SpecError(f"the exporter wrote opset {written}, not {report.opset}", hint="choose another --opset")
    report.checks.append("onnx.checker")


class Normalized(nn.Module):
    """``model`` on raw pixels: ``(x / 255 - mean) / std`` first (x float, NCHW, in [0, 255])."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("scale", 1.0 / (255.0 * torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)))
        self.register_buffer(
            "shift", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) / torch.tensor(std).view(1, -1, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * self.scale - self.shift)


def _write_metadata(onnx, path: Path, metadata: dict[str, str]) -> None:
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def _compare_onnxruntime(path, model, input_shape, batch, dynamic_batch, trials) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batches = [1, batch + 1, batch] if dynamic_batch else [batch]
    worst = 0.0
    for i in range(trials):
        x = torch.randn(batches[i % len(batches)], *input_shape)
        with torch.no_grad():
            want = model(x)
        got = torch.from_numpy(session.run(None, {name: x.numpy()})[0])
        error = (got - want).abs().max().item()
        scale = want.abs().max().item() + 1.0
        if not error <= 1e-4 * scale:
            raise SpecError(
                f"the ONNX model differs from PyTorch by {error:.3g} (scale {scale:.3g}) on random inputs",
                hint="nothing was written; please report this with the spec",
            )
        worst = max(worst, error)
    return worst
