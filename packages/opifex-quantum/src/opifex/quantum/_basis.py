"""Contracted Gaussian basis sets (STO-3G, 6-31G, 6-31G*, 6-31G**, ANO-RCC-MB) for H to Ar.

The data ship with the package (``basis_data/*.json``, generated from basis-set-exchange by
``scripts/generate_basis_data.py``). A ``BasisSet`` is static: it is hashable, never traced, and
fixes the shapes of every matrix, so the integrals built from it can be jit-compiled once and
vmapped over geometries.

Conventions (PySCF's, so matrices can be compared entry by entry): the cartesian components of a
shell run ``lx`` descending, then ``ly`` descending (p: x, y, z; d: xx, xy, xz, yy, yz, zz);
spherical d functions are the real solid harmonics in the order xy, yz, z2, xz, x2-y2.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from importlib import resources
from typing import NamedTuple

import numpy as np

from opifex.quantum._elements import atomic_number

_FILES = {
    "sto-3g": "sto-3g.json",
    "6-31g": "6-31g.json",
    "6-31g*": "6-31gstar.json",
    "6-31g**": "6-31gstarstar.json",
    "ano-rcc-mb": "ano-rcc-mb.json",
}
_ALIASES = {"6-31g(d)": "6-31g*", "6-31g(d,p)": "6-31g**"}
MAX_ANGULAR_MOMENTUM = 2


class Shell(NamedTuple):
    """One contracted shell on one atom.

    Attributes:
        atom: index of the atom the shell sits on.
        l: angular momentum (0, 1 or 2).
        exponents: primitive exponents.
        coefficients: contraction coefficients that already include the normalisation of each
            primitive's ``x^l`` component and of the contraction, so the contracted ``x^l``
            component has unit norm.
    """

    atom: int
    l: int  # noqa: E741 - the standard symbol for angular momentum
    exponents: tuple[float, ...]
    coefficients: tuple[float, ...]


def cartesian_powers(l: int) -> tuple[tuple[int, int, int], ...]:  # noqa: E741
    """The cartesian components ``(lx, ly, lz)`` of a shell, in PySCF's order.

    Example:
        >>> cartesian_powers(2)
        ((2, 0, 0), (1, 1, 0), (1, 0, 1), (0, 2, 0), (0, 1, 1), (0, 0, 2))
    """
    return tuple((lx, ly, l - lx - ly) for lx in range(l, -1, -1) for ly in range(l - lx, -1, -1))


def double_factorial(n: int) -> int:
    """``n!! = n (n - 2) (n - 4) ...``, with ``n!! = 1`` for ``n <= 0``.

    Example:
        >>> double_factorial(5), double_factorial(-1)
        (15, 1)
    """
    return 1 if n <= 0 else n * double_factorial(n - 2)


def _normalised_coefficients(l: int, exponents: np.ndarray, coefficients: np.ndarray) -> tuple:  # noqa: E741
    primitive_norm = (
        (2 * exponents / np.pi) ** 0.75
        * (4 * exponents) ** (l / 2)
        / np.sqrt(double_factorial(2 * l - 1))
    )
    c = coefficients * primitive_norm
    a = exponents[:, None] + exponents[None, :]
    overlap = (np.pi / a) ** 1.5 * double_factorial(2 * l - 1) / (2 * a) ** l
    return tuple(float(x) for x in c / np.sqrt(c @ overlap @ c))


def _cartesian_block(l: int, cartesian: bool) -> np.ndarray:  # noqa: E741
    powers = cartesian_powers(l)
    if cartesian or l < 2:
        norms = [
            np.sqrt(
                double_factorial(2 * l - 1) / np.prod([double_factorial(2 * p - 1) for p in power])
            )
            for power in powers
        ]
        return np.diag(norms)
    # d: raw components xx, xy, xz, yy, yz, zz (xx unit-normalised) -> xy, yz, z2, xz, x2-y2
    s3 = np.sqrt(3.0)
    block = np.zeros((6, 5))
    block[1, 0] = s3
    block[4, 1] = s3
    block[[0, 3, 5], 2] = (-0.5, -0.5, 1.0)
    block[2, 3] = s3
    block[[0, 3], 4] = (s3 / 2, -s3 / 2)
    return block


def canonical_basis_name(name: str) -> str:
    """The lower-case name under which a basis set's data ship (aliases resolved).

    Raises:
        ValueError: for an unknown name.

    Example:
        >>> canonical_basis_name("6-31G(d)")
        '6-31g*'
    """
    key = str(name).lower().replace(" ", "")
    key = _ALIASES.get(key, key)
    if key not in _FILES:
        raise ValueError(f"unknown basis set {name!r}; known: {', '.join(known_basis_sets())}")
    return key


@functools.cache
def basis_set_data(name: str) -> dict[int, list]:
    """The shipped data of a basis set: ``{Z: [[l, exponents, coefficients], ...]}``.

    Coefficients are the published ones (of normalised primitives), as basis-set-exchange
    gives them; ``SP`` shells are split into an s and a p shell.

    Example:
        >>> [shell[0] for shell in basis_set_data("6-31g")[8]]   # l of each shell of oxygen
        [0, 0, 1, 0, 1]
    """
    file = _FILES[canonical_basis_name(name)]
    text = resources.files("opifex.quantum").joinpath("basis_data", file).read_text()
    return {int(z): shells for z, shells in json.loads(text)["elements"].items()}


def known_basis_sets() -> tuple[str, ...]:
    """The basis-set names ``build_basis`` accepts (case-insensitive).

    Example:
        >>> "6-31g*" in known_basis_sets()
        True
    """
    return (*_FILES, *_ALIASES)


@dataclasses.dataclass(frozen=True)
class BasisSet:
    """A basis set placed on the atoms of a molecule (static and hashable).

    Attributes:
        name: the basis-set name, lower case.
        shells: the contracted shells, atom by atom.
        cartesian: cartesian (6 d functions) instead of spherical (5 d functions).
        atomic_numbers: the atoms the shells sit on.
    """

    name: str
    shells: tuple[Shell, ...]
    cartesian: bool
    atomic_numbers: tuple[int, ...]

    @property
    def n_cartesian(self) -> int:
        """Number of cartesian functions."""
        return sum((s.l + 1) * (s.l + 2) // 2 for s in self.shells)

    @property
    def n_functions(self) -> int:
        """Number of basis functions (spherical d counts 5, cartesian d 6)."""
        return self.cartesian_to_basis.shape[1]

    @functools.cached_property
    def cartesian_to_basis(self) -> np.ndarray:
        """``T``: basis function ``o`` is ``sum_c T[c, o]`` times raw cartesian function ``c``.

        Raw cartesian functions are the ``Shell`` components (only the ``x^l`` one unit-normed);
        ``T`` unit-normalises every cartesian component or forms real solid harmonics.
        """
        blocks = [_cartesian_block(s.l, self.cartesian) for s in self.shells]
        rows = sum(b.shape[0] for b in blocks)
        cols = sum(b.shape[1] for b in blocks)
        out = np.zeros((rows, cols))
        r = c = 0
        for b in blocks:
            out[r : r + b.shape[0], c : c + b.shape[1]] = b
            r, c = r + b.shape[0], c + b.shape[1]
        return out

    @property
    def function_atoms(self) -> np.ndarray:
        """The atom index of each basis function."""
        return np.concatenate(
            [np.full(_cartesian_block(s.l, self.cartesian).shape[1], s.atom) for s in self.shells]
        )


def build_basis(
    atomic_numbers: tuple[int, ...] | list[int | str],
    name: str = "sto-3g",
    *,
    cartesian: bool = False,
) -> BasisSet:
    """Place a named basis set on a list of atoms.

    Args:
        atomic_numbers: the atoms, as atomic numbers or element symbols.
        name: one of ``known_basis_sets()`` (case-insensitive).
        cartesian: use 6 cartesian d functions instead of 5 spherical ones (PySCF's ``cart``).

    Returns:
        The ``BasisSet``.

    Raises:
        ValueError: for an unknown basis name or an element the basis set does not cover.

    Example:
        >>> basis = build_basis(["O", "H", "H"], "6-31g*")
        >>> basis.n_functions, build_basis([8, 1, 1], "6-31g*", cartesian=True).n_functions
        (18, 19)
    """
    key = canonical_basis_name(name)
    data = basis_set_data(key)
    numbers = tuple(atomic_number(a) for a in atomic_numbers)
    if not numbers:
        raise ValueError("atomic_numbers is empty")
    shells = []
    for atom, z in enumerate(numbers):
        if z not in data:
            raise ValueError(f"basis set {key!r} has no data for element Z={z} (atom {atom})")
        # PySCF's order: an atom's shells sorted by angular momentum (stable), so s, s, p, p, d.
        for l, exponents, coefficients in sorted(data[z], key=lambda shell: shell[0]):  # noqa: E741
            if l > MAX_ANGULAR_MOMENTUM:
                raise ValueError(f"angular momentum l={l} is not supported (max 2)")
            exps = np.asarray(exponents, dtype=np.float64)
            coefs = _normalised_coefficients(l, exps, np.asarray(coefficients, np.float64))
            shells.append(Shell(atom, l, tuple(float(a) for a in exps), coefs))
    return BasisSet(key, tuple(shells), bool(cartesian), numbers)
