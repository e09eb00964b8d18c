"""Codegen internals: forward bodies as statements, loop folding on them, and the naming service."""

from __future__ import annotations

import pytest

from mgspec.codegen.namespace import Namespace, function_namespace, identifier, module_namespace
from mgspec.codegen.statements import Assign, Element, Invoke, Loop, Return, fold_loops, print_body


def step(i: int, *args: str, attr: str = "steps", comment: str = "") -> Assign:
    return Assign(("u",), Invoke(Element(attr, i), args or ("f", "u")), comment)


def folded(statements, sizes, names=None) -> list[str]:
    names = names or function_namespace()
    return print_body(fold_loops(statements, sizes, names), 0)


def test_a_whole_list_of_identical_calls_becomes_one_loop():
    body = [step(0), step(1), step(2), Return(("u",))]
    assert folded(body, {"steps": 3}) == ["for step in self.steps:", "    u = step(f, u)", "return u"]


@pytest.mark.parametrize(
    ("indices", "size", "header"),
    [((1, 2), 4, "for step in self.steps[1:3]:"), ((2, 3), 4, "for step in self.steps[2:]:"), ((0, 1), 3, None)],
)
def test_a_run_of_two_or_more_loops_over_its_slice(indices, size, header):
    lines = folded([step(i) for i in indices], {"steps": size})
    expected = header or "for step in self.steps[0:2]:"
    assert lines == [expected, "    u = step(f, u)"]


def test_one_call_loops_only_when_it_is_the_whole_list():
    assert folded([step(0)], {"steps": 1}) == ["for step in self.steps:", "    u = step(f, u)"]
    assert folded([step(0)], {"steps": 2}) == ["u = self.steps[0](f, u)"]


def test_calls_that_differ_beyond_the_index_stay_apart():
    different_args = [step(0, "f", "u"), step(1, "f", "v")]
    assert folded(different_args, {"steps": 2}) == ["u = self.steps[0](f, u)", "u = self.steps[1](f, v)"]
    gap = [step(0), step(2)]
    assert folded(gap, {"steps": 3}) == ["u = self.steps[0](f, u)", "u = self.steps[2](f, u)"]
    commented = [step(0, comment="N x 16"), step(1, comment="N x 16")]
    assert folded(commented, {"steps": 2}) == ["u = self.steps[0](f, u)  # N x 16", "u = self.steps[1](f, u)  # N x 16"]
    not_a_list = [step(0, attr="pre"), step(1, attr="pre")]
    assert folded(not_a_list, {}) == ["u = self.pre[0](f, u)", "u = self.pre[1](f, u)"]


def test_folding_reads_statements_not_text():
    """A value that merely reads like a list call is an expression, never a loop."""
    text = [Assign(("u",), "self.steps[0](f, u)"), Assign(("u",), "self.steps[1](f, u)")]
    assert fold_loops(text, {"steps": 2}, function_namespace()) == text


def test_the_loop_variable_is_fresh_in_the_body_and_shared_by_its_loops():
    names = function_namespace()
    names.create("step")  # a variable of the body already holds the name
    body = [step(0, attr="pre"), Assign(("u",), "self.solve(f, u)"), step(0, attr="post")]
    out = fold_loops(body, {"pre": 1, "post": 1}, names)
    assert [s.var for s in out if isinstance(s, Loop)] == ["step_2", "step_2"]
    assert print_body(out, 1)[0] == "    for step_2 in self.pre:"


def test_cycles_loop_as_cycle():
    body = [step(0, attr="cycles"), step(1, attr="cycles")]
    assert folded(body, {"cycles": 2})[0] == "for cycle in self.cycles:"


@pytest.mark.parametrize(
    ("candidate", "made"),
    [("lambda", "lambda_2"), ("sum", "sum_2"), ("self", "self_2"), ("torch", "torch_2"), ("f - A(u)", "f___A_u")],
)
def test_made_names_are_never_keywords_builtins_or_module_names(candidate, made):
    assert function_namespace().create(candidate) == made


def test_identifiers_are_ascii_and_never_start_with_a_digit():
    assert identifier("2x") == "_2x"
    assert identifier("ü") == "v"
    assert identifier("A_fine") == "A_fine"


def test_created_names_are_unique_unless_the_caller_says_the_holder_is_done():
    names = Namespace()
    assert [names.create("u"), names.create("u"), names.create("u")] == ["u", "u_2", "u_3"]
    assert names.create("u", lambda name: name == "u_2") == "u_2"  # the first name whose holder is done
    assert names.create("u", lambda name: False) == "u_4"
    names.reserve("r")
    assert names.create("r", lambda name: True) == "r_2"  # a reserved name never is


def test_class_names_avoid_the_modules_own_names():
    names = module_namespace({"LayerNorm2d"})
    assert [names.create(n) for n in ("LayerNorm2d", "nn", "BasicBlock", "BasicBlock")] == [
        "LayerNorm2d_2",
        "nn_2",
        "BasicBlock",
        "BasicBlock_2",
    ]


def test_claimed_names_are_kept_as_they_are_or_refused():
    names = Namespace()
    assert names.claim("input") == "input"  # an attribute may be a builtin's name: it lives on self
    with pytest.raises(ValueError, match="'input'"):
        names.claim("input")
    for bad in ("class", "a.b", "ü"):
        with pytest.raises(ValueError):
            names.claim(bad)
    copy = names.copy()
    copy.create("x")
    assert names.create("x") == "x"  # a copy goes on without changing the original
