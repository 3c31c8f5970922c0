from pathlib import Path

import pytest
from pydantic import ValidationError

from calculations.tools import UnknownTool, get_registry, get_tool


def test_registry_finds_the_real_tools() -> None:
    assert {"prodigal", "hmmsearch", "obabel"} <= set(get_registry())


def test_unknown_tool_names_the_known_ones() -> None:
    with pytest.raises(UnknownTool, match="known tools: .*prodigal"):
        get_tool("blastx")


def test_prodigal_argv() -> None:
    spec = get_tool("prodigal")
    argv = spec.build_argv(spec.params_model(mode="single", translation_table=4), {"contigs": Path("/in/g.fna")})
    assert argv == ["prodigal", "-q", "-i", "/in/g.fna", "-a", "proteins.faa", "-f", "gff", "-o", "genes.gff",
                    "-p", "single", "-g", "4"]  # fmt: skip
    meta = spec.build_argv(spec.params_model(mode="meta"), {"contigs": Path("/in/g.fna")})
    assert "-g" not in meta


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"translation_table": 7}, "not one Prodigal supports"),
        ({"mode": "meta", "translation_table": 4}, "only be set in single mode"),
        ({"mode": "closed"}, "'single' or 'meta'"),
        ({"bogus": 1}, "Extra inputs are not permitted"),
    ],
)
def test_prodigal_rejects_bad_params(params: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        get_tool("prodigal").params_model.model_validate(params)


def test_hmmsearch_argv_passes_the_evalue_and_both_inputs() -> None:
    spec = get_tool("hmmsearch")
    argv = spec.build_argv(spec.params_model(evalue=1e-5), {"profile": Path("p.hmm"), "sequences": Path("s.faa")})
    assert argv[argv.index("-E") + 1] == "1e-05"
    assert argv[-2:] == ["p.hmm", "s.faa"]


def test_obabel_infers_the_input_format_from_the_file_name() -> None:
    spec = get_tool("obabel")
    argv = spec.build_argv(spec.params_model(output_format="inchikey"), {"molecules": Path("x/ethanol.SMI")})
    assert argv == ["obabel", "-ismi", "x/ethanol.SMI", "-oinchikey", "-O", "molecules.inchikey"]
    with pytest.raises(ValueError, match="cannot tell the molecule format of 'mol.txt'"):
        spec.check_inputs(spec.params_model(), {"molecules": "mol.txt"})  # type: ignore[misc]
    spec.check_inputs(spec.params_model(input_format="sdf"), {"molecules": "mol.txt"})  # type: ignore[misc]
