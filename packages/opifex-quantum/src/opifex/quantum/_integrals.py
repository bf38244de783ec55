"""All the integrals an SCF needs, in one jit-compiled call per basis set."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from opifex.quantum._basis import BasisSet
from opifex.quantum._integrals_types import Integrals
from opifex.quantum._molecule import nuclear_repulsion
from opifex.quantum._one_electron import one_electron_from_pairs
from opifex.quantum._precision import require_x64
from opifex.quantum._shell_pairs import primitive_pairs, shell_pairs
from opifex.quantum._two_electron import eri_from_pairs


@functools.partial(jax.jit, static_argnums=0)
def _compute(basis: BasisSet, coordinates: jax.Array, nuclear_charges: jax.Array) -> Integrals:
    classes, _ = shell_pairs(basis)
    pairs = [primitive_pairs(pc, coordinates) for pc in classes]
    overlap, kinetic, nuclear = one_electron_from_pairs(basis, pairs, coordinates, nuclear_charges)
    eri = eri_from_pairs(basis, pairs)
    return Integrals(
        overlap, kinetic, nuclear, eri, nuclear_repulsion(coordinates, nuclear_charges)
    )


def compute_integrals(
    basis: BasisSet, coordinates: jax.Array, nuclear_charges: jax.Array
) -> Integrals:
    """Overlap, kinetic, nuclear-attraction and electron-repulsion integrals, and ``E_nuc``.

    Compiled once per basis set (``basis`` is static); ``coordinates`` may be traced, so the
    call works under ``jax.jit``, ``jax.vmap`` over geometries and ``jax.grad`` / ``jax.jacfwd``.

    Args:
        basis: the basis set placed on the atoms (static).
        coordinates: ``(n_atoms, 3)`` nuclear positions in Bohr.
        nuclear_charges: ``(n_atoms,)`` nuclear charges.

    Returns:
        The ``Integrals`` (float64), matrices over ``basis.n_functions`` functions.

    Raises:
        RuntimeError: if 64-bit floats are off.
        ValueError: if the shapes do not match the basis.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from opifex.quantum._basis import build_basis
        >>> basis = build_basis([1, 1], "sto-3g")
        >>> with jax.enable_x64(True):
        ...     ints = compute_integrals(
        ...         basis, jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.4]]), jnp.array([1.0, 1.0]))
        >>> ints.eri.shape, round(float(ints.nuclear_repulsion), 6)
        ((2, 2, 2, 2), 0.714286)
    """
    require_x64("compute_integrals")
    if not isinstance(basis, BasisSet):
        raise TypeError(f"basis must be a BasisSet, got {type(basis).__name__}")
    n_atoms = len(basis.atomic_numbers)
    coordinates = jnp.asarray(coordinates, dtype=jnp.float64)
    nuclear_charges = jnp.asarray(nuclear_charges, dtype=jnp.float64)
    if coordinates.shape != (n_atoms, 3):
        raise ValueError(f"coordinates must have shape ({n_atoms}, 3), got {coordinates.shape}")
    if nuclear_charges.shape != (n_atoms,):
        raise ValueError(
            f"nuclear_charges must have shape ({n_atoms},), got {nuclear_charges.shape}"
        )
    return _compute(basis, coordinates, nuclear_charges)
