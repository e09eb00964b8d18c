"""Classifying image files with a trained model: a run directory, its safetensors file or an ONNX export.

Each source says what the model expects (class names, mean, std, input size): a run through its
config.json, a ``.safetensors`` file and an exported ``.onnx`` file through their metadata. An
image is read with Pillow (PNG, JPEG and whatever else Pillow opens; EXIF orientation applied),
converted to the model's channels (RGB, or grayscale for 1-channel models; alpha is dropped),
resized so that it covers the input size with its aspect ratio kept (for square inputs: the
shorter side becomes the input size; bilinear, antialiased; an image already of the input size
is not resampled), center-cropped to the input size, scaled to [0, 1] and normalised with the
model's mean and std, exactly as ``evaluate`` feeds test images. An ONNX file that says
``input: raw_0_255`` takes the pixels unnormalised. A file that cannot be read as an image is
an error of that file alone (:class:`ImageError`); the others are still classified.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mgspec.errors import Location, SpecError

#: File name endings a directory's images are taken by (other files in it are skipped).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Images classified in one forward pass.
BATCH = 64


class ImageError(SpecError):
    """An image file that cannot be classified (missing, not an image, too large)."""


@dataclass
class Predictor:
    """A model and its input contract; ``logits`` maps a float batch (N, C, H, W) to logits."""

    source: Path
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int, int]  # channels, height, width
    raw_pixels: bool  # the model takes pixels in [0, 255], not normalised ones
    logits: object  # Callable[[torch.Tensor], torch.Tensor]

    def probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        """Class probabilities of uint8 images (N, C, H, W) of the input size."""
        if self.raw_pixels:
            x = pixels.float()
        else:
            mean = torch.tensor(self.mean).view(1, -1, 1, 1)
            std = torch.tensor(self.std).view(1, -1, 1, 1)
            x = (pixels.float().div_(255) - mean) / std  # as evaluate's Normalize
        with torch.no_grad():
            return torch.softmax(self.logits(x).float(), dim=1)


def _pillow():
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise SpecError("reading images needs Pillow", hint="pip install 'mgspec[predict]' (or Pillow)") from None
    return Image, ImageOps


def load_predictor(path: str | Path) -> Predictor:
    """The model of a run directory, a ``.safetensors`` file written by mgspec, or an ``.onnx`` export."""
    path = Path(path)
    if path.is_dir():
        return _from_run(path)
    if not path.exists():
        raise SpecError("no such run directory or model file", Location(str(path)))
    if not path.is_file():
        raise SpecError("not a regular file", Location(str(path)))
    if path.suffix == ".safetensors":
        return _from_safetensors(path)
    if path.suffix == ".onnx":
        return _from_onnx(path)
    raise SpecError(
        "not a model mgspec can classify with",
        Location(str(path)),
        hint="give a run directory, a .safetensors file written by mgspec or an .onnx file from mgspec export",
    )


def _torch_predictor(path: Path, model, facts) -> Predictor:
    model.eval()
    return Predictor(path, facts.class_names, facts.mean, facts.std, facts.input_size, False, model)


def _from_run(directory: Path) -> Predictor:
    import mgspec
    from mgspec import describe
    from mgspec.train import trainer

    stored = trainer.read_run(directory)
    if stored is None:
        raise SpecError("not a run directory (no config.json)", Location(str(directory)))
    source, overrides = trainer.stored_spec(stored), list(stored["spec"]["overrides"])
    model = mgspec.create_model(source, overrides)
    trainer.load_weights(model, directory, "cpu", "the run directory's checkpoint does not fit its spec")
    facts = describe.preprocessing(model.graph.graph["spec"], stored["config"]["dataset"])
    return _torch_predictor(directory, model, facts)


def _from_safetensors(path: Path) -> Predictor:
    import mgspec
    from mgspec import describe
    from mgspec.train import artifacts

    source, overrides = artifacts.stored_spec(path)
    model = mgspec.create_model(source, overrides)
    artifacts.load(model, path)
    facts = describe.preprocessing(model.graph.graph["spec"], artifacts.describe_file(path).get("dataset") or None)
    return _torch_predictor(path, model, facts)


def _from_onnx(path: Path) -> Predictor:
    try:
        import onnxruntime as ort
    except ImportError:
        raise SpecError("classifying with ONNX needs onnxruntime", hint="pip install 'mgspec[onnx]'") from None
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own errors: not an ONNX file, or a broken one
        raise SpecError(f"cannot load the ONNX model: {_first_line(exc)}", Location(str(path))) from None
    meta = session.get_modelmeta().custom_metadata_map
    try:
        names = tuple(str(n) for n in json.loads(meta["names"]))
        mean, std = tuple(json.loads(meta["mean"])), tuple(json.loads(meta["std"]))
        size = tuple(int(v) for v in json.loads(meta["input_size"]))
        raw = {"normalized": False, "raw_0_255": True}[meta["input"]]
        assert len(size) == 3 and len(mean) == len(std) == size[0] and names
    except (KeyError, ValueError, TypeError, AssertionError):
        raise SpecError(
            "the ONNX file does not say what it expects (names, mean, std, input_size, input metadata)",
            Location(str(path)),
            hint="export it with mgspec export --onnx",
        ) from None
    batch = session.get_inputs()[0].shape[0]
    fixed = batch if isinstance(batch, int) else None
    name = session.get_inputs()[0].name

    def logits(x: torch.Tensor) -> torch.Tensor:
        step = fixed or len(x)
        out = []
        for start in range(0, len(x), step):
            chunk = x[start : start + step]
            padded = torch.cat([chunk, chunk.new_zeros(step - len(chunk), *chunk.shape[1:])])
            out.append(torch.from_numpy(session.run(None, {name: padded.numpy()})[0][: len(chunk)]))
        return torch.cat(out)

    return Predictor(path, names, mean, std, size, raw, logits)


def expand(paths: Iterable[str | Path]) -> Iterator[Path]:
    """The image files named: files as given, a directory's images (by suffix, sorted by name)."""
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                yield path  # reported as an error of its own
            yield from found
        else:
            yield path


def read_image(path: Path, size: tuple[int, int, int]) -> torch.Tensor:
    """``path`` as uint8 pixels (C, H, W) of ``size``: converted, resized and center-cropped."""
    image_module, ops = _pillow()
    channels, height, width = size
    if path.is_dir():
        raise ImageError("no PNG or JPEG files in this directory", Location(str(path)))
    if path.exists() and not path.is_file():  # a FIFO or device would block or never end
        raise ImageError("not a regular file", Location(str(path)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", image_module.DecompressionBombWarning)
            with image_module.open(path) as opened:
                image = ops.exif_transpose(opened).convert("RGB" if channels == 3 else "L")
    except FileNotFoundError:
        raise ImageError("no such file", Location(str(path))) from None
    except (OSError, ValueError, SyntaxError, image_module.DecompressionBombError, Warning) as exc:
        raise ImageError(f"cannot read the image: {_first_line(exc)}", Location(str(path))) from None
    image = _cover_and_crop(image, image_module, height, width)
    array = np.array(image, dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


def _cover_and_crop(image, image_module, height: int, width: int):
    """Scale (aspect kept) until the image covers height x width, then crop the center."""
    w, h = image.size
    if (w, h) != (width, height):
        scale = max(height / h, width / w)
        new = (max(width, round(w * scale)), max(height, round(h * scale)))
        image = image.resize(new, image_module.Resampling.BILINEAR)
    w, h = image.size
    left, top = (w - width) // 2, (h - height) // 2
    return image.crop((left, top, left + width, top + height))


@dataclass
class Result:
    """The top classes of one image (``error`` set instead when it could not be read)."""

    file: str
    top: list[tuple[int, str, float]]  # (index, name, probability), most probable first
    error: str | None = None


def predict(predictor: Predictor, images: Iterable[str | Path], k: int = 1) -> Iterator[Result]:
    """Classify each image (in batches of :data:`BATCH`), in the order given; bad files as errors."""
    classes = len(predictor.class_names)
    if not 1 <= k <= classes:
        raise SpecError(f"-k {k}: the model has {classes} classes", hint=f"choose 1 to {classes}")
    if predictor.input_size[0] not in (1, 3):
        raise SpecError(f"images are RGB or grayscale: the model takes {predictor.input_size[0]} channels")
    pending: list[tuple[Path, torch.Tensor]] = []
    for path in expand(images):
        try:
            pending.append((path, read_image(path, predictor.input_size)))
        except ImageError as exc:
            yield from _classify(predictor, pending, k)
            pending = []
            yield Result(str(path), [], str(exc))
            continue
        if len(pending) == BATCH:
            yield from _classify(predictor, pending, k)
            pending = []
    yield from _classify(predictor, pending, k)


def _classify(predictor: Predictor, pending: list[tuple[Path, torch.Tensor]], k: int) -> Iterator[Result]:
    if not pending:
        return
    probabilities = predictor.probabilities(torch.stack([pixels for _, pixels in pending]))
    values, indices = probabilities.topk(k, dim=1)
    for (path, _), p, i in zip(pending, values.tolist(), indices.tolist(), strict=True):
        yield Result(str(path), [(c, predictor.class_names[c], v) for c, v in zip(i, p, strict=True)])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
