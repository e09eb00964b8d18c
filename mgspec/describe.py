"""What a model expects and what its outputs mean, as every artifact records it.

One place for the facts that the safetensors metadata, the ONNX ``metadata_props``, the timm
``pretrained_cfg`` and ``mgspec predict`` all carry: the dataset, its class names in label order,
the per-channel mean and standard deviation of pixels scaled to [0, 1], the input size
(channels, height, width), and the SHA-256 of the spec's canonical form (the validated spec as
sorted, compact JSON: two files that differ only in comments, key order or defaults written
out hash the same).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from mgspec.schema import Spec

#: ImageNet's normalisation, used for 3-channel specs that match no supported dataset.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """A model's input contract and label meaning."""

    dataset: str | None
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int, int]  # channels, height, width


def canonical(spec: Spec) -> str:
    """The spec's canonical form: its validated data as sorted, compact JSON."""
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def spec_sha256(spec: Spec) -> str:
    """SHA-256 of :func:`canonical`."""
    return hashlib.sha256(canonical(spec).encode()).hexdigest()


def guess_dataset(spec: Spec) -> str | None:
    """The supported dataset whose channels, image size and classes the spec has, if one does."""
    from mgspec.train.data import DATASETS

    height, width = spec.input.shape
    for info in DATASETS.values():
        if (info.channels, info.size, info.size, info.classes) == (spec.input.channels, height, width, spec.classes):
            return info.name
    return None


def preprocessing(spec: Spec, dataset: str | None = None) -> Preprocessing:
    """The input contract of ``spec`` trained on ``dataset`` (default: the dataset it fits, if any).

    Without a dataset, 3-channel specs take ImageNet's mean and std, others 0.5 and 0.5, and the
    classes are named by their index.
    """
    from mgspec.train.data import dataset_info

    dataset = dataset or guess_dataset(spec)
    channels = spec.input.channels
    height, width = spec.input.shape
    names: tuple[str, ...] = ()
    if dataset is not None:
        info = dataset_info(dataset)
        mean, std, names = info.mean, info.std, info.class_names
    elif channels == 3:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        mean, std = (0.5,) * channels, (0.5,) * channels
    if len(names) != spec.classes:
        names = tuple(str(i) for i in range(spec.classes))
    return Preprocessing(dataset, names, tuple(mean), tuple(std), (channels, height, width))


def onnx_metadata(graph, dataset: str | None = None, raw_pixels: bool = False) -> dict[str, str]:
    """The ``metadata_props`` of an exported ONNX model of ``graph`` (values are strings; lists as JSON).

    ``input`` says what the graph takes: ``normalized`` (pixels scaled to [0, 1], minus ``mean``,
    divided by ``std``) or ``raw_0_255`` (float RGB in [0, 255], NCHW; the graph normalises).
    """
    from mgspec import __version__
    from mgspec.count import count

    spec = graph.graph["spec"]
    facts = preprocessing(spec, dataset)
    counts = count(graph)
    values = {
        "names": list(facts.class_names),
        "mean": list(facts.mean),
        "std": list(facts.std),
        "input_size": list(facts.input_size),
        "spec": spec.name,
        "spec_sha256": spec_sha256(spec),
        "mgspec_version": __version__,
        "weights": counts.total,
        "macs": counts.macs,
        "dataset": facts.dataset or "",
        "input": "raw_0_255" if raw_pixels else "normalized",
    }
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
