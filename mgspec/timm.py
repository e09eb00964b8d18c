"""timm integration: every built-in model as ``timm.create_model("mgspec_<name>")``.

``import mgspec.timm`` registers them. Each model's
``pretrained_cfg`` carries the input size, mean, std and number of classes of the dataset the
spec fits (:mod:`mgspec.describe`); there are no pretrained weights, so ``pretrained=True`` is
refused. ``num_classes`` and ``in_chans`` become the overrides ``classes`` and
``input.channels``; ``overrides=`` takes any others (``{"width": 2}``).

Importing this module needs timm (which needs torchvision); without it the ImportError says so.
"""

from __future__ import annotations

from typing import Any

try:
    from timm.models import register_model
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("mgspec.timm needs timm: pip install timm") from exc

import mgspec
from mgspec import describe, registry

#: timm reads the default configuration of each registered name from its module's ``default_cfgs``.
default_cfgs: dict[str, dict[str, Any]] = {}
__all__: list[str] = []


def pretrained_cfg(name: str) -> dict[str, Any]:
    """The timm ``pretrained_cfg`` of a built-in model (no weights: ``url`` is empty)."""
    spec, _ = mgspec.load_spec(registry.spec_path(name))
    facts = describe.preprocessing(spec)
    return {
        "url": "",
        "architecture": f"mgspec_{name}",
        "input_size": facts.input_size,
        "fixed_input_size": True,
        "mean": facts.mean,
        "std": facts.std,
        "num_classes": spec.classes,
        "label_names": facts.class_names,
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "license": "mit",
        "notes": (spec.description or "",),
    }


def _entrypoint(name: str):
    def create(pretrained: bool = False, **kwargs: Any):
        if pretrained:
            raise ValueError(f"mgspec_{name} has no pretrained weights; train it with `mgspec train {name}`")
        kwargs.pop("pretrained_cfg", None)
        kwargs.pop("pretrained_cfg_overlay", None)
        kwargs.pop("cache_dir", None)
        overrides = dict(kwargs.pop("overrides", None) or {})
        if kwargs.get("num_classes") is not None:
            overrides["classes"] = kwargs.pop("num_classes")
        if kwargs.get("in_chans") is not None:
            overrides["input.channels"] = kwargs.pop("in_chans")
        unknown = sorted(k for k, v in kwargs.items() if v is not None)
        if unknown:
            raise TypeError(f"mgspec_{name} does not take {', '.join(unknown)}; pass overrides={{...}} instead")
        model = mgspec.create_model(registry.spec_path(name), overrides)
        cfg = pretrained_cfg(name)
        if overrides:
            spec = model.graph.graph["spec"]
            facts = describe.preprocessing(spec)
            cfg.update(num_classes=spec.classes, input_size=facts.input_size, label_names=facts.class_names)
        model.pretrained_cfg = model.default_cfg = cfg
        return model

    create.__name__ = create.__qualname__ = f"mgspec_{name}"
    create.__module__ = __name__
    create.__doc__ = f"mgspec's built-in model {name!r} (mgspec/specs), as a timm model."
    return create


def register() -> list[str]:
    """Register every built-in model with timm (once); returns the timm names."""
    names = []
    for name in registry.list_models():
        timm_name = f"mgspec_{name}"
        if timm_name not in globals():
            default_cfgs[timm_name] = pretrained_cfg(name)
            globals()[timm_name] = register_model(_entrypoint(name))
        names.append(timm_name)
    return names


register()
