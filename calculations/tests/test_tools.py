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
    params = spec.params_model.model_validate({"mode": "single", "translation_table": 4})
    argv = spec.build_argv(params, {"contigs": Path("/in/g.fna")})
    assert argv == ["prodigal", "-q", "-i", "/in/g.fna", "-a", "proteins.faa", "-f", "gff", "-o", "genes.gff",
                    "-p", "single", "-g", "4"]  # fmt: skip
    meta = spec.build_argv(spec.params_model.model_validate({"mode": "meta"}), {"contigs": Path("/in/g.fna")})
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
    params = spec.params_model.model_validate({"evalue": 1e-5})
    argv = spec.build_argv(params, {"profile": Path("p.hmm"), "sequences": Path("s.faa")})
    assert argv[argv.index("-E") + 1] == "1e-05"
    assert argv[-2:] == ["p.hmm", "s.faa"]


def test_obabel_infers_the_input_format_from_the_file_name() -> None:
    spec = get_tool("obabel")
    params = spec.params_model.model_validate({"output_format": "inchikey"})
    argv = spec.build_argv(params, {"molecules": Path("x/ethanol.SMI")})
    assert argv == ["obabel", "-ismi", "x/ethanol.SMI", "-oinchikey", "-O", "molecules.inchikey"]
    assert spec.check_inputs is not None
    with pytest.raises(ValueError, match="cannot tell the molecule format of 'mol.txt'"):
        spec.check_inputs(spec.params_model(), {"molecules": "mol.txt"})
    spec.check_inputs(spec.params_model.model_validate({"input_format": "sdf"}), {"molecules": "mol.txt"})
