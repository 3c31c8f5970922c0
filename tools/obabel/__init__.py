"""Open Babel: convert molecules between file formats, optionally generating 3D coordinates."""

from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Literal, get_args

from pydantic import Field

from calculations.tools import ContainerImage, InputRole, OutputRole, Resources, ToolParams, ToolSpec

MoleculeFormat = Literal["smi", "can", "sdf", "mol", "mol2", "pdb", "xyz", "cml", "inchi"]
OutputFormat = Literal["smi", "can", "sdf", "mol", "mol2", "pdb", "xyz", "cml", "inchi", "inchikey"]
_EXTENSIONS: dict[str, str] = {
    "smi": "smi", "smiles": "smi", "can": "can", "sdf": "sdf", "sd": "sdf", "mol": "mol",
    "mol2": "mol2", "pdb": "pdb", "ent": "pdb", "xyz": "xyz", "cml": "cml", "inchi": "inchi",
}  # fmt: skip


class ObabelParams(ToolParams):
    input_format: MoleculeFormat | None = Field(
        None, description="Format of the input; unset: inferred from the file name's extension."
    )
    output_format: OutputFormat = Field("sdf", description="Format to write.")
    gen3d: bool = Field(False, description="Generate 3D coordinates (--gen3d).")


def input_format(params: ObabelParams, filename: str) -> str:
    if params.input_format:
        return params.input_format
    extension = PurePath(filename).suffix.lower().lstrip(".")
    if extension not in _EXTENSIONS:
        raise ValueError(
            f"cannot tell the molecule format of {filename!r} from its extension; "
            f"set params.input_format to one of {', '.join(get_args(MoleculeFormat))}"
        )
    return _EXTENSIONS[extension]


def check_inputs(params: ObabelParams, filenames: Mapping[str, str]) -> None:
    input_format(params, filenames["molecules"])


def build_argv(params: ObabelParams, inputs: Mapping[str, Path]) -> list[str]:
    source = inputs["molecules"]
    argv = ["obabel", f"-i{input_format(params, source.name)}", str(source), f"-o{params.output_format}"]
    argv += ["-O", f"molecules.{params.output_format}"]
    if params.gen3d:
        argv.append("--gen3d")
    return argv


def _output_path() -> str:
    # one output role whose file name depends on the chosen format: matched by glob
    return "molecules.*"


TOOL = ToolSpec(
    name="obabel",
    version="3.1.1",
    description="Convert molecules between formats (SMILES, SDF, MOL2, PDB, …) with Open Babel.",
    params_model=ObabelParams,
    inputs=(InputRole("molecules", "Molecules in any supported text format.", ("text",)),),
    outputs=(OutputRole("molecules", "The converted molecules.", _output_path(), "text"),),
    build_argv=build_argv,
    executable="obabel",
    image=ContainerImage("emgapi/obabel:3.1.1", Path(__file__).parent),
    # single-threaded: more CPUs would idle
    resources=Resources(cpus=1, memory_mb=1024, time_limit_seconds=600, max_cpus=1, max_memory_mb=8192),
    check_inputs=check_inputs,
)
