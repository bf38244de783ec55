"""PySCF as a cross-check backend (the optional ``opifex-quantum[pyscf]`` extra).

``to_pyscf`` builds the PySCF molecule of a ``Molecule`` with *the same* basis-set data opifex
uses (basis-set-exchange, full precision), so the two codes can be compared number for number.
PySCF's own ``"sto-3g"`` / ``"6-31g"`` files round exponents and coefficients to about 8 digits,
which moves total energies by up to ~1e-7 Eh.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from opifex.quantum._basis import basis_set_data
from opifex.quantum._elements import element_symbol
from opifex.quantum._molecule import Molecule


def pyscf_basis(atomic_numbers, basis: str) -> dict[str, list]:
    """The shipped data of a basis set in PySCF's format, ``{symbol: [[l, [a, c], ...], ...]}``.

    Also what PySCF's ``density_fit(auxbasis=...)`` takes for an auxiliary set.

    Example:
        >>> [shell[0] for shell in pyscf_basis([8, 1, 1], "6-31g")["O"]]
        [0, 0, 1, 0, 1]
    """
    data = basis_set_data(basis)
    return {
        element_symbol(z): [
            [l, *([a, c] for a, c in zip(exps, coefs, strict=True))]
            for l, exps, coefs in data[z]  # noqa: E741
        ]
        for z in set(atomic_numbers)
    }


def to_pyscf(molecule: Molecule, basis: str = "sto-3g", *, cartesian: bool = False) -> Any:
    """The ``pyscf.gto.Mole`` of ``molecule`` with opifex's data for ``basis``.

    Args:
        molecule: the molecule (concrete coordinates, Bohr).
        basis: a basis-set name opifex knows.
        cartesian: cartesian d functions (PySCF's ``cart``).

    Returns:
        A built ``pyscf.gto.Mole`` (``verbose=0``).

    Raises:
        ImportError: if PySCF is not installed (``pip install "opifex-quantum[pyscf]"``).

    Example:
        >>> from opifex.quantum import molecule_from_name
        >>> to_pyscf(molecule_from_name("H2O"), "6-31g").nao
        13
    """
    try:
        from pyscf import gto
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError('to_pyscf needs PySCF: pip install "opifex-quantum[pyscf]"') from error
    coordinates = np.asarray(molecule.coordinates, dtype=np.float64)
    return gto.M(
        atom=list(zip(molecule.symbols, coordinates.tolist(), strict=True)),
        unit="bohr",
        basis=pyscf_basis(molecule.atomic_numbers, basis),
        charge=molecule.charge,
        spin=molecule.multiplicity - 1,
        cart=cartesian,
        verbose=0,
    )
