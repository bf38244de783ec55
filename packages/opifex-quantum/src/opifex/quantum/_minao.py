"""The MINAO initial guess: minimal-basis atomic natural orbitals projected into the basis.

Each atom contributes the density of its spherically averaged ground configuration (the
electrons of a partly filled shell shared equally by its orbitals) built from the ANO-RCC-MB
contractions: the leading atomic natural orbitals of the ANO-RCC basis, one per occupied shell
(Widmark, Malmqvist and Roos, Theor. Chim. Acta 77, 291 (1990); Roos et al., J. Phys. Chem. A
108, 2851 (2005)), which come from correlated calculations with density matrices averaged over
several atomic states and were made for atoms in molecules. The atomic density is projected
into the molecule's basis functions on the same atom by least squares, ``P = S_tt^-1 S_ta``.
This is the idea of PySCF's default ``minao`` guess, which projects all atoms at once; here the
projection is done atom by atom, so the guess is block diagonal, geometry-independent and
computed once per element and basis set, in numpy, without integrals over the molecule.
"""

from __future__ import annotations

import collections
import functools

import numpy as np

from opifex.quantum._basis import BasisSet, Shell, build_basis, cartesian_powers, double_factorial
from opifex.quantum._elements import MAX_ATOMIC_NUMBER, ground_state_configuration
from opifex.quantum._guess import block_diagonal_guess

ANO_BASIS = "ano-rcc-mb"


def ground_configuration(atomic_number: int) -> dict[int, list[float]]:
    """Electrons per orbital of each occupied shell, by angular momentum (H to Kr).

    The ground configuration of ``ground_state_configuration`` (Cr ``[Ar] 3d5 4s1``, Cu
    ``[Ar] 3d10 4s1``); a partly filled shell shares its electrons equally among its ``2l + 1``
    orbitals (spherical averaging). Shells of one ``l`` are listed by increasing ``n``; there
    is a key for every ``l`` up to the highest occupied one, and always for s and p.

    Example:
        >>> ground_configuration(6)   # carbon: 1s2 2s2 2p2
        {0: [2.0, 2.0], 1: [0.6666666666666666]}
        >>> ground_configuration(24)[2]   # chromium: 3d5, one electron in each 3d orbital
        [1.0]
    """
    if isinstance(atomic_number, bool) or not 1 <= atomic_number <= MAX_ATOMIC_NUMBER:
        raise ValueError(
            f"the MINAO guess covers H to Kr (Z = 1-{MAX_ATOMIC_NUMBER}), got Z={atomic_number}"
        )
    subshells = ground_state_configuration(atomic_number)
    highest = max(1, *(l for _, l, _ in subshells))  # noqa: E741
    configuration: dict[int, list[float]] = {l: [] for l in range(highest + 1)}  # noqa: E741
    for _, l, electrons in sorted(subshells, key=lambda subshell: subshell[:2]):  # noqa: E741
        configuration[l].append(electrons / (2 * l + 1))
    return dict(sorted(configuration.items()))


def _moments(n: int, gamma: np.ndarray) -> np.ndarray:
    """``integral x^n exp(-gamma x^2) dx`` over the real line."""
    if n % 2:
        return np.zeros_like(gamma)
    return double_factorial(n - 1) / (2.0 * gamma) ** (n // 2) * np.sqrt(np.pi / gamma)


def same_centre_overlap(shells: tuple[Shell, ...]) -> np.ndarray:
    """Overlap of the raw cartesian components of shells that share one centre.

    Args:
        shells: shells on one atom (their ``atom`` fields are not read).

    Returns:
        The ``(n_cartesian, n_cartesian)`` overlap matrix of the raw components, in the order
        of ``BasisSet.cartesian_to_basis``'s rows.

    Example:
        >>> basis = build_basis([1], "sto-3g")
        >>> round(float(same_centre_overlap(basis.shells)[0, 0]), 12)
        1.0
    """
    components = [
        (np.asarray(s.exponents), np.asarray(s.coefficients), power)
        for s in shells
        for power in cartesian_powers(s.l)
    ]
    overlap = np.zeros((len(components), len(components)))
    for i, (a, ca, pa) in enumerate(components):
        for j, (b, cb, pb) in enumerate(components):
            gamma = a[:, None] + b[None, :]
            factors = [_moments(m + n, gamma) for m, n in zip(pa, pb, strict=True)]
            overlap[i, j] = np.sum(np.outer(ca, cb) * factors[0] * factors[1] * factors[2])
    return overlap


def _ano_occupations(source: BasisSet, atomic_number: int) -> np.ndarray:
    """Electrons in each function of the atom's ANO set.

    The k-th contraction of angular momentum l holds the k-th occupied shell of that l.
    """
    configuration = ground_configuration(atomic_number)
    occupations, seen = [], collections.Counter()
    for shell in source.shells:
        k = seen[shell.l]
        seen[shell.l] += 1
        shell_occupations = configuration.get(shell.l, [])
        electrons = shell_occupations[k] if k < len(shell_occupations) else 0.0
        occupations += [electrons] * (2 * shell.l + 1)
    return np.asarray(occupations)


@functools.cache
def projected_ano_density(atomic_number: int, basis_name: str, cartesian: bool) -> np.ndarray:
    """The MINAO density of one neutral atom in its functions of a basis set.

    Args:
        atomic_number: the element (1-36, H to Kr).
        basis_name: a basis-set name ``build_basis`` knows.
        cartesian: cartesian instead of spherical functions.

    Returns:
        The total density matrix over the atom's functions. Its trace with the atom's overlap
        matrix is the number of electrons the basis can hold of the atomic density: the atomic
        number less what the projection loses (about 0.2% for hydrogen in 6-31G).

    Example:
        >>> d = projected_ano_density(1, "ano-rcc-mb", False)
        >>> d.round(6).tolist()
        [[1.0]]
    """
    target = build_basis((atomic_number,), basis_name, cartesian=cartesian)
    source = build_basis((atomic_number,), ANO_BASIS)
    # the target's functions (cartesian or spherical) next to the ANOs' (always spherical)
    t_target, t_source = target.cartesian_to_basis, source.cartesian_to_basis
    to_basis = np.zeros(np.add(t_target.shape, t_source.shape))
    to_basis[: t_target.shape[0], : t_target.shape[1]] = t_target
    to_basis[t_target.shape[0] :, t_target.shape[1] :] = t_source
    overlap = to_basis.T @ same_centre_overlap(target.shells + source.shells) @ to_basis
    n = target.n_functions
    projection = np.linalg.solve(overlap[:n, :n], overlap[:n, n:])
    return (projection * _ano_occupations(source, atomic_number)) @ projection.T


def minao_guess(basis: BasisSet) -> np.ndarray:
    """The MINAO guess of a molecule: each atom's projected ANO density on its diagonal block.

    Args:
        basis: the molecule's basis set.

    Returns:
        The total density of the neutral atoms, ``(n_functions, n_functions)``; charged
        molecules and other spin states start from it too.

    Example:
        >>> basis = build_basis(["O", "H", "H"], "6-31g")
        >>> guess = minao_guess(basis)
        >>> guess.shape, bool(abs(guess[0, 9]) == 0.0)   # no O-H coupling: block diagonal
        ((13, 13), True)
    """
    return block_diagonal_guess(basis, projected_ano_density)
