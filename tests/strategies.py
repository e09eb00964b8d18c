"""Hypothesis strategies for valid specs of every family, kept small so torch checks are fast."""

from __future__ import annotations

from hypothesis import strategies as st

from mgspec import parse_text
from mgspec.load import Source


@st.composite
def channel_grids(draw, min_width: int):
    group_size = draw(st.sampled_from([1, 2, 4]))
    coarsest = draw(st.sampled_from([c for c in (2, 4, 8) if c <= min_width]))
    return {
        "group_size": group_size,
        "coarsest": coarsest,
        "pre_smoothing": draw(st.integers(1, 2)),
        "post_smoothing": draw(st.integers(0, 2)),
        "norms_per_step": draw(st.sampled_from([None, 1, 2])),
        "share": draw(st.sampled_from([["A", "B"], ["A"], ["B"], []])),
        "cycle": draw(st.sampled_from(["V", "W"])),
        "transfers": draw(st.sampled_from(["pairwise", "dense"])),
        "coarsening": draw(st.sampled_from([2, 2, 4])),
    }


@st.composite
def layers(draw) -> dict:
    """Layer choices; GroupNorm with 1 or 2 groups divides every width drawn here (2 and up, even)."""
    layers = {
        "norm": draw(st.sampled_from(["batch", "group", "none"])),
        "activation": draw(st.sampled_from(["relu", "gelu", "silu"])),
        "kernel": draw(st.sampled_from([1, 3, 5])),
        "norms_per_step": draw(st.sampled_from([1, 2])),
    }
    if layers["norm"] == "group":  # refused with any other norm
        layers["norm_groups"] = draw(st.sampled_from([1, 2]))
    if layers["norm"] == "none":  # nothing to place: refused
        del layers["norms_per_step"]
    return layers


@st.composite
def spec_data(draw, family: str | None = None) -> dict:
    family = family or draw(st.sampled_from(["resnet", "mgnet", "mgnet_grouped", "mgiad", "mgic"]))
    n_levels = draw(st.integers(1, 3))
    base = draw(st.sampled_from([4, 8]))
    restriction = draw(st.sampled_from(["depthwise", "avgpool", "dense"]))
    # Widths may shrink (not with average-pool restriction, which repeats channels).
    steps = [1, 2] if restriction == "avgpool" else [0.5, 1, 2]
    channels, c = [], base
    for i in range(n_levels):
        c = int(c * (draw(st.sampled_from(steps)) if i else 1))
        channels.append(max(c, 4))
    side = st.sampled_from([8, 12, 16])
    size = draw(st.one_of(side, st.lists(side, min_size=2, max_size=2)))
    data: dict = {
        "name": "generated",
        "input": {"channels": draw(st.sampled_from([1, 3])), "size": size},
        "classes": draw(st.integers(2, 12)),
        "stem": {
            "kernel": draw(st.sampled_from([1, 3, 5])),
            "stride": draw(st.sampled_from([1, 1, 2])),
            "maxpool": draw(st.booleans()),
        },
        "head": {"bias": draw(st.booleans())},
        "layers": draw(layers()),
    }
    if "norm_groups" in data["layers"] and (data["stem"]["stride"] > 1 or data["stem"]["maxpool"]):
        data["layers"]["norm_groups"] = 1  # maps may reach 1x1: GroupNorm needs 2+ values
    if family == "resnet" and "norms_per_step" in data["layers"]:  # no smoothing steps: 1 would be refused
        data["layers"]["norms_per_step"] = 2
    if family in ("resnet", "mgic"):
        data["resolution_grid"] = {
            "block": "resnet_basic",
            # option A zero-pads channels: only where widths never shrink
            "shortcut": draw(st.sampled_from(["projection", "option_a"]))
            if channels == sorted(channels)
            else "projection",
            "levels": [{"channels": ch, "steps": draw(st.integers(1, 2))} for ch in channels],
        }
        if family == "mgic":
            data["channel_grid"] = draw(channel_grids(min(channels)))
            if data["layers"]["norm"] == "none":
                data["channel_grid"]["norms_per_step"] = None
    else:
        levels = [{"channels": ch, "steps": draw(st.integers(1, 2 if family == "mgiad" else 3))} for ch in channels]
        grid = data["resolution_grid"] = {
            "block": "mgnet",
            "levels": levels,
            "level1_transfers": restriction != "avgpool" and draw(st.booleans()),  # avgpool has no R, Pi
            "restriction": restriction,
        }
        if family == "mgiad":
            data["channel_grid"] = draw(channel_grids(min(channels)))
            if data["layers"]["norm"] == "none":
                data["channel_grid"]["norms_per_step"] = None
            shared = data["channel_grid"]["share"]
            if draw(st.booleans()):  # grouped coarsest channel level; coarsest widths here are even
                grid["group_size"] = draw(st.sampled_from([1, 2]))
        else:
            shared = grid["share"] = draw(st.sampled_from([["A", "B"], ["A"], ["B"], []]))
        if any(a == b for a, b in zip(channels, channels[1:], strict=False)):  # only between equal widths
            grid["share_across"] = [op for op in shared if draw(st.booleans())]  # any subset
        if family == "mgnet_grouped":
            grid["group_size"] = draw(st.sampled_from([1, 2, 4]))
    return data


def to_source(data: dict) -> Source:
    import yaml

    return parse_text(yaml.safe_dump(data, sort_keys=False), "<hypothesis>")
