"""Contracted Gaussian basis sets for H to Kr: Pople, Dunning, Karlsruhe, ANO and fitting sets.

Orbital basis sets: STO-3G, 6-31G, 6-31G*, 6-31G**, cc-pVDZ, cc-pVTZ, def2-SVP, def2-TZVP and
ANO-RCC-MB (the MINAO guess's minimal basis); auxiliary (density-fitting) sets:
def2-universal-JKFIT and cc-pVTZ-JKFIT. The data ship with the package (``basis_data/*.json``,
generated from basis-set-exchange by ``scripts/generate_basis_data.py``); ``basis_elements``
says which elements each set covers. A ``BasisSet`` is static: it is hashable, never traced, and
fixes the shapes of every matrix, so the integrals built from it can be jit-compiled once and
vmapped over geometries.

Conventions (PySCF's, so matrices can be compared entry by entry): the cartesian components of a
shell run ``lx`` descending, then ``ly`` descending (p: x, y, z; d: xx, xy, xz, yy, yz, zz);
spherical functions are unit-normalised real solid harmonics, ``m = -l .. l`` for ``l >= 2``
(d: xy, yz, z2, xz, x2-y2) and x, y, z for p (``cartesian_block``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from importlib import resources
from typing import NamedTuple

import numpy as np

from opifex.quantum._elements import atomic_number, element_symbol

_FILES = {
    "sto-3g": "sto-3g.json",
    "6-31g": "6-31g.json",
    "6-31g*": "6-31gstar.json",
    "6-31g**": "6-31gstarstar.json",
    "cc-pvdz": "cc-pvdz.json",
    "cc-pvtz": "cc-pvtz.json",
    "def2-svp": "def2-svp.json",
    "def2-tzvp": "def2-tzvp.json",
    "ano-rcc-mb": "ano-rcc-mb.json",
    "def2-universal-jkfit": "def2-universal-jkfit.json",
    "cc-pvtz-jkfit": "cc-pvtz-jkfit.json",
}
_ALIASES = {"6-31g(d)": "6-31g*", "6-31g(d,p)": "6-31g**"}
MAX_ANGULAR_MOMENTUM = 6
"""The highest angular momentum ``build_basis`` accepts: i functions, which
def2-universal-JKFIT has on Sc..Zn (and h on Ga..Kr). The orbital basis sets need at most g (4),
which cc-pVTZ has on Sc..Zn."""


def _lookup_key(name: str) -> str:
    """A basis-set name compared case-, space-, dash-, underscore- and slash-insensitively."""
    return re.sub(r"[\s_/-]", "", str(name).lower())


_LOOKUP = {_lookup_key(key): key for key in _FILES} | {
    _lookup_key(alias): key for alias, key in _ALIASES.items()
}


class Shell(NamedTuple):
    """One contracted shell on one atom.

    Attributes:
        atom: index of the atom the shell sits on.
        l: angular momentum (0 to ``MAX_ANGULAR_MOMENTUM``).
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


def _angular_overlap(l: int) -> np.ndarray:  # noqa: E741
    """Overlap of the raw cartesian components of one shell (``x^l`` has unit norm).

    ``<x^a y^b z^c | x^a' y^b' z^c'> / <x^l | x^l> = prod (p + p' - 1)!! / (2l - 1)!!`` when every
    ``p + p'`` is even (the radial factors are the same for all components of a shell), else 0.
    """
    powers = cartesian_powers(l)
    out = np.zeros((len(powers), len(powers)))
    for i, a in enumerate(powers):
        for j, b in enumerate(powers):
            sums = [p + q for p, q in zip(a, b, strict=True)]
            if all(n % 2 == 0 for n in sums):
                out[i, j] = np.prod([double_factorial(n - 1) for n in sums])
    return out / double_factorial(2 * l - 1)


def _solid_harmonic(l: int, m: int) -> np.ndarray:  # noqa: E741
    """The real solid harmonic ``S_lm`` as coefficients of the monomials ``cartesian_powers(l)``.

    ``S_lm = sum_tuv C_tuv x^(2t + |m| - 2(u + v)) y^(2(u + v)) z^(l - 2t - |m|)`` with
    ``C_tuv = (-1)^(t + v - v_m) 4^-t binom(l, t) binom(l - t, |m| + t) binom(t, u)
    binom(|m|, 2v)``, ``v_m = 0`` for ``m >= 0`` (cos-type) and ``1/2`` for ``m < 0`` (sin-type),
    ``v = v_m, v_m + 1, ..`` up to ``|m| / 2`` (Helgaker, Jorgensen and Olsen, *Molecular
    Electronic-Structure Theory*, eq. 6.4.47); scaled to unit norm by the caller.
    """
    am = abs(m)
    parity = 0 if m >= 0 else 1  # 2 v_m
    index = {power: k for k, power in enumerate(cartesian_powers(l))}
    coefficients = np.zeros(len(index))
    for t in range((l - am) // 2 + 1):
        for u in range(t + 1):
            for two_v in range(parity, am + 1, 2):
                value = (
                    (-1) ** (t + (two_v - parity) // 2)
                    * 0.25**t
                    * math.comb(l, t)
                    * math.comb(l - t, am + t)
                    * math.comb(t, u)
                    * math.comb(am, two_v)
                )
                power = (2 * t + am - 2 * u - two_v, 2 * u + two_v, l - 2 * t - am)
                coefficients[index[power]] += value
    return coefficients


@functools.cache
def _cached_cartesian_block(l: int, cartesian: bool) -> np.ndarray:  # noqa: E741
    powers = cartesian_powers(l)
    if cartesian or l < 2:
        norms = [
            np.sqrt(
                double_factorial(2 * l - 1) / np.prod([double_factorial(2 * p - 1) for p in power])
            )
            for power in powers
        ]
        block = np.diag(norms)
    else:
        block = np.stack([_solid_harmonic(l, m) for m in range(-l, l + 1)], axis=1)
        norms = np.einsum("co,cd,do->o", block, _angular_overlap(l), block)
        block = block / np.sqrt(norms)
    block.setflags(write=False)
    return block


def cartesian_block(l: int, cartesian: bool) -> np.ndarray:  # noqa: E741
    """The basis functions of one shell in its raw cartesian components.

    Column ``o`` holds the coefficients of basis function ``o`` over the shell's raw cartesian
    components ``cartesian_powers(l)`` (every component carries the contraction normalised for
    ``x^l``, so only ``x^l`` has unit norm). Cartesian: the diagonal that unit-normalises each
    component. Spherical: the unit-normalised real solid harmonics, PySCF's functions in PySCF's
    order and sign: ``m = -l, .., l`` for ``l >= 2`` (d: xy, yz, z2, xz, x2-y2; f:
    y(3x2-y2), xyz, yz2, z3, xz2, z(x2-y2), x(x2-3y2)), and x, y, z for p.

    Args:
        l: the angular momentum (any ``l >= 0``).
        cartesian: cartesian instead of spherical functions.

    Returns:
        A read-only ``((l + 1)(l + 2) / 2, n)`` array, ``n = (l + 1)(l + 2) / 2`` cartesian or
        ``2l + 1`` spherical functions.

    Raises:
        ValueError: if ``l`` is not a non-negative integer.

    Example:
        >>> cartesian_block(3, False).shape, cartesian_block(3, True).shape
        ((10, 7), (10, 10))
        >>> (cartesian_block(2, False)[:, 2] * 2).round(6).tolist()   # z2 in xx, xy, .., zz
        [-1.0, 0.0, 0.0, -1.0, 0.0, 2.0]
    """
    if isinstance(l, bool) or not isinstance(l, int | np.integer) or l < 0:
        raise ValueError(f"l must be a non-negative integer, got {l!r}")
    return _cached_cartesian_block(int(l), bool(cartesian))


def basis_elements(name: str) -> tuple[int, ...]:
    """The atomic numbers a basis set has data for (``build_basis`` accepts exactly these).

    Every set covers what basis-set-exchange defines for it from H to Kr, all-electron (none of
    the shipped sets uses an ECP below Rb): all of H..Kr except cc-pVDZ and cc-pVTZ (no K) and
    cc-pVTZ-JKFIT (H, B..F, Al..Cl and Ga..Br only).

    Example:
        >>> len(basis_elements("def2-svp")), 19 in basis_elements("cc-pvdz")
        (36, False)
    """
    return tuple(sorted(basis_set_data(name)))


def _element_ranges(numbers: tuple[int, ...]) -> str:
    """``H, B-F, Al-Cl`` for the atomic numbers 1, 5..9, 13..17."""
    runs: list[list[int]] = []
    for z in sorted(numbers):
        if runs and z == runs[-1][1] + 1:
            runs[-1][1] = z
        else:
            runs.append([z, z])
    return ", ".join(
        element_symbol(a) if a == b else f"{element_symbol(a)}-{element_symbol(b)}" for a, b in runs
    )


def canonical_basis_name(name: str) -> str:
    """The lower-case name under which a basis set's data ship (aliases resolved).

    Names compare without regard to case, spaces, dashes, underscores and slashes
    (``"cc-pVDZ"``, ``"ccpvdz"``, ``"def2-SVP"``, ``"def2/universal-jkfit"``).

    Raises:
        ValueError: for an unknown name.

    Example:
        >>> canonical_basis_name("6-31G(d)"), canonical_basis_name("ccpVTZ")
        ('6-31g*', 'cc-pvtz')
    """
    key = _LOOKUP.get(_lookup_key(name))
    if key is None:
        raise ValueError(f"unknown basis set {name!r}; known: {', '.join(known_basis_sets())}")
    return key


@functools.cache
def basis_set_data(name: str) -> dict[int, list]:
    """The shipped data of a basis set: ``{Z: [[l, exponents, coefficients], ...]}``.

    Coefficients are the published ones (of normalised primitives), as basis-set-exchange
    gives them; ``SP`` shells are split into an s and a p shell, and a general contraction
    into one shell per contraction, without the primitives whose coefficient is zero in it.

    Example:
        >>> [shell[0] for shell in basis_set_data("6-31g")[8]]   # l of each shell of oxygen
        [0, 0, 1, 0, 1]
    """
    file = _FILES[canonical_basis_name(name)]
    text = resources.files("opifex.quantum").joinpath("basis_data", file).read_text()
    return {int(z): shells for z, shells in json.loads(text)["elements"].items()}


def known_basis_sets() -> tuple[str, ...]:
    """The basis-set names ``build_basis`` accepts (case-insensitive, see ``canonical_basis_name``).

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
        cartesian: cartesian (6 d, 10 f, 15 g functions) instead of spherical (``2l + 1``).
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
        """Number of basis functions (``2l + 1`` per spherical shell, more if cartesian)."""
        return sum(cartesian_block(s.l, self.cartesian).shape[1] for s in self.shells)

    @functools.cached_property
    def cartesian_to_basis(self) -> np.ndarray:
        """``T``: basis function ``o`` is ``sum_c T[c, o]`` times raw cartesian function ``c``.

        Raw cartesian functions are the ``Shell`` components (only the ``x^l`` one unit-normed);
        ``T`` is block diagonal, one ``cartesian_block`` per shell, and unit-normalises every
        cartesian component or forms real solid harmonics.
        """
        blocks = [cartesian_block(s.l, self.cartesian) for s in self.shells]
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
            [np.full(cartesian_block(s.l, self.cartesian).shape[1], s.atom) for s in self.shells]
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
        cartesian: use cartesian functions (6 d, 10 f, 15 g) instead of spherical ones
            (PySCF's ``cart``).

    Returns:
        The ``BasisSet``.

    Raises:
        ValueError: for an unknown basis name or an element the basis set does not cover (the
            message lists the elements it covers, ``basis_elements``).

    Example:
        >>> basis = build_basis(["O", "H", "H"], "6-31g*")
        >>> basis.n_functions, build_basis([8, 1, 1], "6-31g*", cartesian=True).n_functions
        (18, 19)
        >>> build_basis(["Cl", "H"], "cc-pVTZ").n_functions   # f on Cl, d on H
        48
    """
    key = canonical_basis_name(name)
    data = basis_set_data(key)
    numbers = tuple(atomic_number(a) for a in atomic_numbers)
    if not numbers:
        raise ValueError("atomic_numbers is empty")
    shells = []
    for atom, z in enumerate(numbers):
        if z not in data:
            raise ValueError(
                f"basis set {key!r} has no data for element {element_symbol(z)} (Z={z}, atom "
                f"{atom}); it covers {_element_ranges(tuple(data))}"
            )
        # PySCF's order: an atom's shells sorted by angular momentum (stable), so s, s, p, p, d.
        for l, exponents, coefficients in sorted(data[z], key=lambda shell: shell[0]):  # noqa: E741
            if l > MAX_ANGULAR_MOMENTUM:
                raise ValueError(
                    f"basis set {key!r} has angular momentum l={l} on {element_symbol(z)}; "
                    f"supported are l <= {MAX_ANGULAR_MOMENTUM}"
                )
            exps = np.asarray(exponents, dtype=np.float64)
            coefs = _normalised_coefficients(l, exps, np.asarray(coefficients, np.float64))
            shells.append(Shell(atom, l, tuple(float(a) for a in exps), coefs))
    return BasisSet(key, tuple(shells), bool(cartesian), numbers)
