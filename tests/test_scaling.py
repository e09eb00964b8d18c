"""Scaling laws in the width multiplier lambda, proven over hypothesis-drawn configurations."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import mgspec
from tests.conftest import ROOT

S = ROOT / "specs"


def weights(spec: str, overrides: list[str]) -> int:
    return mgspec.count_spec(S / spec, overrides).total


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(
    lam=st.sampled_from([1, 2, 4, 8, 16, 32]),
    gs=st.sampled_from([1, 2, 4, 8]),
    ck=st.sampled_from([4, 8, 16, 32, 64]),
    post=st.integers(0, 3),
    classes=st.sampled_from([10, 100]),
)
def test_mgiad_weights_grow_at_most_linearly(lam, gs, ck, post, classes):
    """MGiaD: N(2 lambda) <= 2 N(lambda) + C, with C = L (36 gs + 4 eta + 10)(2 cK - 1).

    Derivation from the closed form (architectures.md): every term of N is linear in the
    level widths c_l = lambda c_l^0 except the classifier bias n and the coarsest-level terms
    g(C) = 18 C^2 + (4 eta + 4) C - 2 (18 gs + 4 eta + 7) C. Doubling lambda leaves each
    coarsest width C_l unchanged (the halving chain from 2c passes through c), and for the
    power-of-two multipliers drawn here C_l lies in [cK, 2 cK - 1] (an odd width stops the halving
    early, so other multipliers get the same law with their own largest coarsest width),
    so N(2 lambda) - 2 N(lambda) = -n - sum_l g(C_l) <= sum_l (36 gs + 4 eta + 10) C_l
    <= L (36 gs + 4 eta + 10)(2 cK - 1): a constant independent of lambda. Hence the weights
    grow at most linearly in the channel width. The same identity bounds it from below,
    N(2 lambda) - 2 N(lambda) >= -n - L (18 (2 cK - 1)^2 + (4 eta + 4)(2 cK - 1)), so the growth is
    exactly linear up to a constant (L = 4 levels here).
    """
    eta = 1 + post
    base = [
        f"channel_grid.group_size={gs}",
        f"channel_grid.coarsest={ck}",
        f"channel_grid.post_smoothing={post}",
        f"classes={classes}",
    ]
    try:
        n1 = weights("mgiad_cifar10.yaml", base + [f"width={lam}"])
    except mgspec.SpecError:
        assume(False)  # e.g. an odd width whose channel levels the group size cannot divide
    n2 = weights("mgiad_cifar10.yaml", base + [f"width={2 * lam}"])
    c_max = 2 * ck - 1
    assert n2 <= 2 * n1 + 4 * (36 * gs + 4 * eta + 10) * c_max
    assert n2 >= 2 * n1 - classes - 4 * (18 * c_max**2 + (4 * eta + 4) * c_max)


@settings(max_examples=25, deadline=None)
@given(
    spec=st.sampled_from(
        [
            "mgnet_cifar10.yaml",
            "mgnet_a_cifar10.yaml",
            "mgnet_small_cifar10.yaml",
            "resnet20_cifar10.yaml",
            "resnet18_cifar10.yaml",
        ]
    ),
    lam=st.integers(1, 12),
    classes=st.sampled_from([10, 100]),
)
@pytest.mark.slow
def test_dense_weights_grow_quadratically(spec, lam, classes):
    """MgNet and ResNet: N(lambda) = a lambda^2 + b lambda + n, an exact quadratic.

    Every conv is fully coupled (or, for R/Pi, depthwise-style), so its weights are
    c_out c_in k^2 / groups: quadratic in lambda for A, B, ResNet convs and 1x1 projections, linear
    for R, Pi (groups = c_in), BN, the stem (c_in is the image's) and the classifier weights,
    constant for the classifier bias n. So the third finite difference vanishes, the second is 2a
    with a = sum over fully coupled non-stem convs of c_in c_out k^2 at lambda = 1, and doubling
    the width gives exactly N(2 lambda) = 4 N(lambda) - 2 b lambda - 3 n.
    """
    over = [f"classes={classes}"]
    n = [weights(spec, over + [f"width={lam + i}"]) for i in range(4)]
    d1 = [b - a for a, b in itertools.pairwise(n)]
    d2 = [b - a for a, b in itertools.pairwise(d1)]
    assert d2[0] == d2[1] > 0  # exact quadratic with positive leading coefficient
    a = d2[0] // 2
    graph = mgspec.compile_graph(S / spec)
    coupled = sum(
        s.cin * s.cout * s.kernel**2
        for s in graph.graph["slots"].values()
        if s.kind == "conv" and s.groups == 1 and s.operator != "stem"
    )
    assert a == coupled
    b_lin = n[0] - a * lam * lam - classes  # b lambda: what is left after the square and the bias
    assert weights(spec, over + [f"width={2 * lam}"]) == 4 * n[0] - 2 * b_lin - 3 * classes


# Which design-space options keep MGiaD's weights linear in the width lambda, and which do not.
# For power-of-two multipliers every coarsest channel width stays cK, so N(lambda) = a + b lambda
# exactly when every weight term is linear in the level widths: the test checks
# N(8) - N(4) = 2 (N(4) - N(2)) = 4 (N(2) - N(1)). A term quadratic in the widths (a dense
# c x c or c x c/2 convolution) adds 3 c^2-type curvature and breaks the identity.
LINEAR = {
    "layers.norm=group": True,  # 2c per normalisation, like BatchNorm
    "layers.norm=none": True,
    "layers.activation=silu": True,
    "layers.kernel=5": True,  # grouped k x k: 25 gs c per operator
    "layers.norms_per_step=1": True,
    # W visits channel level k 2^k times, each visit with norms and transfers of width c / 2^k: about c
    # per level, and doubling lambda adds a level, so N grows as lambda log lambda.
    "channel_grid.cycle=W": False,
    "resolution_grid.levels[1].steps=2": True,  # two cycles on level 2: per-cycle norms, transfers
    "channel_grid.share=[A]": True,  # B per step: grouped, 9 gs c each
    "channel_grid.share=[]": True,
    "resolution_grid.share_across=[A, B]": True,  # shares, never adds
    "resolution_grid.restriction=avgpool": True,  # no weights
    "resolution_grid.group_size=16": True,  # the coarsest level grouped: constant in lambda
    "channel_grid.coarsening=4": True,  # transfers mixing 4 channels: c weights each (lambda in powers of 4)
    "stem.stride=2": True,
    "resolution_grid.restriction=dense": False,  # dense 3x3 R, Pi: 9 c_l c_l+1 each
    "channel_grid.transfers=dense": False,  # dense 1x1 R_k, Pi_k, P_k: c^2/2 each
}


@pytest.mark.slow
def test_which_options_keep_mgiad_linear_in_the_width():
    for option, linear in LINEAR.items():
        # Multipliers in powers of the coarsening factor keep every coarsest width at cK.
        f = 4 if option == "channel_grid.coarsening=4" else 2
        # With share: [] level 1's first A only ever sees u = 0, and the optimised model drops it. At
        # lambda = 1 level 1 is the coarsest (a dense 64 x 64 A is dropped), from lambda = 2 on a grouped
        # one: the identity holds from lambda = 2.
        first = 1 if option == "channel_grid.share=[]" else 0
        over = [option] + (["resolution_grid.level1_transfers=false"] if option.endswith("avgpool") else [])
        n = [weights("mgiad_cifar10.yaml", [*over, f"width={f**i}"]) for i in range(first, first + 4)]
        steps = (n[1] - n[0], n[2] - n[1], n[3] - n[2])
        is_linear = steps[1] == f * steps[0] and steps[2] == f * steps[1]
        assert is_linear == linear, f"{option}: N = {n}"
    base = {lam: weights("mgiad_cifar10.yaml", [f"width={lam}"]) for lam in (1, 2, 4, 8)}
    assert base[8] - base[4] == 2 * (base[4] - base[2]) == 4 * (base[2] - base[1])  # the canonical MGiaD
