"""A small library of standard test molecules at reference geometries.

Sources of the geometries (Angstrom unless stated):

- H2: 0.74, the customary test value (experiment: 0.7414).
- HeH+: 1.4632 Bohr = 0.7743, the textbook STO-3G example of Szabo & Ostlund, *Modern
  Quantum Chemistry*, section 3.5.2.
- H2O: T. D. Crawford, "Programming Projects", Project #3, ``geom.dat`` (given in Bohr).
- All others: experimental equilibrium geometries from the NIST Computational Chemistry
  Comparison and Benchmark Database (CCCBDB), diatomic bond lengths as in Huber & Herzberg:
  NH3 r(NH) 1.012 and angle HNH 106.7 degrees; CH4 r(CH) 1.087, tetrahedral; N2 1.0977;
  O2 1.2075; OH 0.9697; CO 1.1283; HF 0.9168; LiH 1.5949.
"""

import math
from typing import NamedTuple

from opifex.quantum._molecule import Molecule, create_molecular_system

_Atoms = list[tuple[str, tuple[float, float, float]]]


class _Entry(NamedTuple):
    atoms: _Atoms
    unit: str = "angstrom"
    charge: int = 0
    multiplicity: int | None = None


def _diatomic(a: str, b: str, r: float) -> _Atoms:
    return [(a, (0.0, 0.0, 0.0)), (b, (0.0, 0.0, r))]


def _pyramidal(center: str, ligand: str, r: float, angle_deg: float) -> _Atoms:
    """``center`` with three ``ligand`` atoms at distance ``r`` and mutual angle ``angle_deg``.

    Each bond makes the angle ``beta`` with the C3 axis (z), where
    ``cos(angle) = cos(beta)**2 - sin(beta)**2 / 2``.
    """
    sin_beta = math.sqrt(2.0 * (1.0 - math.cos(math.radians(angle_deg))) / 3.0)
    cos_beta = math.sqrt(1.0 - sin_beta**2)
    ligands = [
        (
            ligand,
            (
                r * sin_beta * math.cos(2.0 * math.pi * k / 3.0),
                r * sin_beta * math.sin(2.0 * math.pi * k / 3.0),
                -r * cos_beta,
            ),
        )
        for k in range(3)
    ]
    return [(center, (0.0, 0.0, 0.0)), *ligands]


def _tetrahedral(center: str, ligand: str, r: float) -> _Atoms:
    a = r / math.sqrt(3.0)
    corners = ((a, a, a), (a, -a, -a), (-a, a, -a), (-a, -a, a))
    return [(center, (0.0, 0.0, 0.0)), *((ligand, corner) for corner in corners)]


_CRAWFORD_WATER_BOHR = [
    ("O", (0.0, -0.143225816552, 0.0)),
    ("H", (1.638036840407, 1.136548822547, 0.0)),
    ("H", (-1.638036840407, 1.136548822547, 0.0)),
]

_LIBRARY: dict[str, _Entry] = {
    "H2": _Entry(_diatomic("H", "H", 0.74)),
    "HeH+": _Entry(_diatomic("He", "H", 0.7743), charge=1),
    "H2O": _Entry(_CRAWFORD_WATER_BOHR, unit="bohr"),
    "NH3": _Entry(_pyramidal("N", "H", 1.012, 106.7)),
    "CH4": _Entry(_tetrahedral("C", "H", 1.087)),
    "N2": _Entry(_diatomic("N", "N", 1.0977)),
    "O2": _Entry(_diatomic("O", "O", 1.2075), multiplicity=3),
    "OH": _Entry(_diatomic("O", "H", 0.9697)),
    "CO": _Entry(_diatomic("C", "O", 1.1283)),
    "HF": _Entry(_diatomic("H", "F", 0.9168)),
    "LiH": _Entry(_diatomic("Li", "H", 1.5949)),
}
_BY_LOWER_NAME = {name.lower(): name for name in _LIBRARY}


def known_molecules() -> tuple[str, ...]:
    """Names accepted by :func:`molecule_from_name`.

    Returns:
        The names, in their canonical spelling.

    Example:
        >>> "H2O" in known_molecules()
        True
    """
    return tuple(_LIBRARY)


def molecule_from_name(name: str, *, multiplicity: int | None = None) -> Molecule:
    """A standard test molecule at its reference geometry.

    Args:
        name: one of :func:`known_molecules`, in any case (``"h2o"``, ``"HEH+"``).
        multiplicity: override the default spin multiplicity (singlet for closed shells,
            triplet for O2, doublet for OH).

    Returns:
        The molecule, coordinates in Bohr.

    Raises:
        ValueError: unknown name (the message lists the known ones) or impossible multiplicity.

    Example:
        >>> o2 = molecule_from_name("o2")
        >>> o2.multiplicity, o2.n_alpha, o2.n_beta
        (3, 9, 7)
        >>> molecule_from_name("HeH+").charge
        1
    """
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in _BY_LOWER_NAME:
        raise ValueError(f"unknown molecule {name!r}; known: {', '.join(_LIBRARY)}")
    entry = _LIBRARY[_BY_LOWER_NAME[key]]
    return create_molecular_system(
        entry.atoms,
        unit=entry.unit,
        charge=entry.charge,
        multiplicity=entry.multiplicity if multiplicity is None else multiplicity,
    )
