"""The stem (the image to the first level's features) and the head (pooling, classifier)."""

from __future__ import annotations

from mgspec.lower.builder import Builder


def stem(b: Builder, x: str, cin: int, c: int, out: str) -> str:
    """``[maxpool](act(norm(conv(x))))``; ``out`` names the result for the first level (f or x)."""
    b.level = "stem"
    spec = b.spec.stem
    to = "f, the data of level 1" if out == "f" else "x, the features of stage 1"
    body = b.act_text(b.norm_text("conv(x)"))
    doc = f"{'maxpool(' if spec.maxpool else ''}{body}{')' if spec.maxpool else ''}: the image to {to}."
    with b.declare("stem", "stem", (("cin", cin), ("cout", c)), doc) as block:
        conv = b.conv_slot("conv", cin, c, "stem", ("stem",), kernel=spec.kernel, stride=spec.stride)
        bn = b.norm_slot("{n}", c, ("stem",))
    with b.run(block, (out,), x=x):
        y = b.act(b.norm(b.conv(x, conv), bn), c)
        if spec.maxpool:
            y = b.emit("maxpool", (y,), c, c, "maxpool", origin=("stem", "maxpool"))
        block.outputs = (("x", y),)
    return y


def head(b: Builder, u: str, c: int) -> str:
    """Global average pooling, then the linear classifier: the logits."""
    b.level = "head"
    classes = b.spec.classes
    doc = "Global average pooling, then the linear classifier."
    with b.declare("head", "head", (("cin", c), ("classes", classes)), doc) as block:
        fc = b.slot("fc", "linear", c, classes, "fc", ("head",), bias=b.spec.head.bias)
    with b.run(block, ("logits",), x=u):
        pooled = b.emit("avgpool", (u,), c, c, "avgpool")
        logits = b.emit("linear", (pooled,), c, classes, "fc", fc.name, ("head",))
        block.outputs = (("logits", logits),)
    return logits
