"""The one grammar of each kind of name (calculations/names.py), and where the server applies it
beyond TES (TES itself: test_tes.py)."""

from __future__ import annotations

import pytest

from calculations import names
from calculations.errors import InvalidInput
from calculations.pipelines import plan
from calculations.tools import get_registry

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "image",
    [
        "alpine", "alpine:3", "alpine:latest", "emgapi/prodigal:2.6.3", "library/alpine", "docker.io/library/alpine",
        "localhost:5000/a/b:1.0", "registry.example.org:443/team/tool", "[::1]:5000/x", "Upper.Case.Host/x",
        "quay.io/biocontainers/samtools:1.9--h91753b0_8", "a__b", "a--b", "a.b_c", f"alpine@{DIGEST}",
        f"ghcr.io/x/y:1@{DIGEST}", "alpine:_x", "alpine:" + "x" * 128,
    ],
)  # fmt: skip
def test_image_references_by_dockers_grammar(image: str) -> None:
    assert names.is_image_reference(image)


@pytest.mark.parametrize(
    "image",
    [
        "", "alpine:x/../../containers", "a/../containers", "../x", "alpine/..", "./alpine", "a//b", "/alpine",
        "alpine/", "Alpine", "alpine/Tool", "-alpine", "alpine-", "a_-b", "a___b", ".a", "alpine:", "alpine:-x",
        "alpine:.x", "alpine:x/y", "alpine:" + "x" * 129, "alpine@sha256:abc", "alpine@" + DIGEST[7:], ":3",
        "alpine:3 ", " alpine", "alpine\n", "alpine\x00", "alpine;id", "alpine?x", "alpine#x", "alpine%2f..",
        "a/" + "b" * 260, "--privileged", "alpine:3@", "é",
    ],
)  # fmt: skip
def test_what_is_not_an_image_reference(image: str) -> None:
    assert not names.is_image_reference(image)
    with pytest.raises(InvalidInput, match="is not a container image reference"):
        names.check_image_reference(image, "image")


def test_the_image_grammar_takes_linear_time_on_hostile_input() -> None:
    for hostile in ("a" + "-a" * 5000 + "!", "a." * 5000 + "!", "a/" * 5000 + "!", "a:" + "1" * 5000 + "/"):
        assert not names.is_image_reference(hostile)  # returns at once: no catastrophic backtracking


@pytest.mark.parametrize("name", ["out.txt", "ethanol structure.sdf", "a", "résumé.pdf", "x" * 255, "_a", "a..b"])
def test_file_names(name: str) -> None:
    assert names.check_file_name(name, "name") == name


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../x", "/abs/x", "a/b", "a\\b", ".hidden", "-rf", "a\x00b", "a\nb", "a\x7f", " a", "a ",
     "é" * 128],
)  # fmt: skip
def test_what_is_not_a_file_name(name: str) -> None:
    with pytest.raises(InvalidInput, match="is not a plain file name"):
        names.check_file_name(name, "name")


def test_environment_names_values_and_bounds() -> None:
    names.check_environment({"A": "x; rm -rf /", "_b1": "$(id)", "PATH": ""}, "env")
    for bad in ("", "1A", "A-B", "A B", "A=B", "A;touch x;B", "A\nB", "É", "A" * 129):
        with pytest.raises(InvalidInput, match="is not a variable name"):
            names.check_environment({bad: "v"}, "env")
    with pytest.raises(InvalidInput, match="env.A: a value cannot hold NUL"):
        names.check_environment({"A": "\x00"}, "env")
    with pytest.raises(InvalidInput, match="the limit is 128"):
        names.check_environment({f"V{i}": "" for i in range(129)}, "env")
    with pytest.raises(InvalidInput, match="the limit is 65536"):
        names.check_environment({"V": "x" * 65536}, "env")


def test_every_registered_tools_roles_are_identifiers() -> None:
    """Roles appear in pipeline references (`genes.proteins`): the registry refuses a tool whose roles
    are not identifiers, and these are the tools it loaded."""
    for spec in get_registry().values():
        roles = [role.name for role in spec.inputs] + [role.name for role in spec.outputs]
        assert all(names.is_identifier(role) for role in roles), spec.name


@pytest.mark.parametrize("step", ["genes\n", "genes ", "1genes", "g" * 65, "gènes"])
def test_a_pipeline_step_name_is_an_identifier(step: str) -> None:
    steps = {step: {"tool": "prodigal", "inputs": {"contigs": "file:" + "0" * 32}}}
    with pytest.raises(InvalidInput, match="a step name is a letter"):
        plan({"steps": steps})


def test_a_pipeline_reference_is_matched_whole() -> None:
    steps = {
        "genes": {"tool": "prodigal", "inputs": {"contigs": "file:" + "0" * 32}},
        "hits": {"tool": "hmmsearch", "inputs": {"profile": "file:" + "0" * 32, "sequences": "genes.proteins\n"}},
    }
    with pytest.raises(InvalidInput, match="is neither 'file:<id>' nor '<step>.<output role>'"):
        plan({"steps": steps})
