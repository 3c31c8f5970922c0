"""Regenerate demo/data (committed): a 100 kbp genome with 4 planted members of a protein family,
and the family's profile HMM built by hmmbuild from 6 other members. Run: python demo/make_demo_data.py"""

import random
import subprocess
import tempfile
from pathlib import Path

from demo.synthetic import fasta, genome_with_genes, protein_family, stockholm

DATA = Path(__file__).parent / "data"


def main() -> None:
    rng = random.Random(20261122)
    family = protein_family(rng, length=260, members=10, identity=0.7)
    planted, training = family[:4], family[4:]
    DATA.mkdir(exist_ok=True)
    genome = genome_with_genes(rng, planted, length=100_000)
    (DATA / "genome.fna").write_text(fasta({"demo_contig_1": genome}))
    with tempfile.TemporaryDirectory() as tmp:
        alignment = Path(tmp) / "family.sto"
        alignment.write_text(stockholm({f"member_{i}": p for i, p in enumerate(training)}))
        subprocess.run(["hmmbuild", "-n", "demo_family", "--seed", "42", str(DATA / "family.hmm"), str(alignment)],
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip


if __name__ == "__main__":
    main()
