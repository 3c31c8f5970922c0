"""Seeded synthetic biology: a protein family, and genomes with family members planted in them.

No data set can be downloaded here, so the demo and the tests make their own, reproducibly.
"""

from __future__ import annotations

import random

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
_BASES = "TCAG"
_CODE = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
CODONS: dict[str, list[str]] = {}
for _index, _aa in enumerate(_CODE):
    codon = _BASES[_index // 16] + _BASES[(_index // 4) % 4] + _BASES[_index % 4]
    CODONS.setdefault(_aa, []).append(codon)


def protein_family(rng: random.Random, *, length: int, members: int, identity: float) -> list[str]:
    """`members` variants of one random protein, each keeping about `identity` of its residues."""
    ancestor = "M" + "".join(rng.choice(AMINO_ACIDS) for _ in range(length - 1))
    family = []
    for _ in range(members):
        family.append("M" + "".join(aa if rng.random() < identity else rng.choice(AMINO_ACIDS) for aa in ancestor[1:]))
    return family


def back_translate(rng: random.Random, protein: str) -> str:
    return "".join(rng.choice(CODONS[aa]) for aa in protein) + rng.choice(CODONS["*"])


def reverse_complement(dna: str) -> str:
    return dna[::-1].translate(str.maketrans("ACGT", "TGCA"))


def genome_with_genes(rng: random.Random, proteins: list[str], *, length: int) -> str:
    """Random DNA of about `length` bp with each protein's gene planted, alternating strands."""
    genes = [back_translate(rng, p) for p in proteins]
    genes = [g if i % 2 == 0 else reverse_complement(g) for i, g in enumerate(genes)]
    spacer = max((length - sum(map(len, genes))) // (len(genes) + 1), 100)
    parts = []
    for gene in genes:
        parts.append("".join(rng.choice("ACGT") for _ in range(spacer)))
        parts.append(gene)
    parts.append("".join(rng.choice("ACGT") for _ in range(spacer)))
    return "".join(parts)


def fasta(records: dict[str, str], width: int = 70) -> str:
    lines = []
    for name, sequence in records.items():
        lines.append(f">{name}")
        lines += [sequence[i : i + width] for i in range(0, len(sequence), width)]
    return "\n".join(lines) + "\n"


def stockholm(records: dict[str, str]) -> str:
    body = "\n".join(f"{name} {sequence}" for name, sequence in records.items())
    return f"# STOCKHOLM 1.0\n{body}\n//\n"
