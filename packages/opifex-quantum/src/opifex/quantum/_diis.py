"""DIIS Fock extrapolation for the SCF loop: Pulay's CDIIS and the energy-based ADIIS / EDIIS.

All matrices are stacks of spin blocks ``(n_spin, n, n)`` (one block for RHF, alpha and beta for
UHF); a history entry is the density ``D_i``, its Fock matrix ``F_i = F[D_i]``, the commutator
error ``e_i`` in an orthonormal basis and the energy ``E_i``. The history is a fixed-size ring
buffer of arrays, so it lives inside ``lax.while_loop`` and under ``vmap``.

CDIIS (Pulay 1982) picks the combination ``sum_i c_i F_i`` (``sum_i c_i = 1``) that minimises
``|sum_i c_i e_i|``. ADIIS (Hu and Yang 2010) and EDIIS (Kudin, Scuseria and Cances 2002) pick
convex coefficients (``c_i >= 0``) that minimise a quadratic model of the energy of
``sum_i c_i D_i``, which pulls the iterates towards low energy while far from convergence.
``energy_diis_fock`` blends the two as Garza and Scuseria (2012) do: energy-based coefficients
while the largest error element exceeds 0.1, CDIIS below 1e-4, linear in between.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

_PSEUDO_INVERSE_CUTOFF = 1e-12
_SIMPLEX_STEPS = 200
_ENERGY_ONLY_ABOVE = 0.1
_CDIIS_ONLY_BELOW = 1e-4


class DIISState(NamedTuple):
    """Ring buffer of the last ``space`` SCF iterates.

    Attributes:
        densities: ``(space, n_spin, n, n)``.
        focks: ``(space, n_spin, n, n)`` Fock matrices of ``densities``.
        errors: ``(space, n_spin, n, n)`` commutator errors in an orthonormal basis.
        energies: ``(space,)`` total energies of ``densities``.
        valid: ``(space,)`` which slots hold an entry.
        head: slot the next entry goes to (0-d int32); the newest entry is at ``head - 1``.
    """

    densities: jax.Array
    focks: jax.Array
    errors: jax.Array
    energies: jax.Array
    valid: jax.Array
    head: jax.Array


def diis_init(space: int, block_shape: tuple[int, ...], dtype: jnp.dtype) -> DIISState:
    """Return an empty history of ``space`` entries of spin blocks shaped ``block_shape``.

    Example:
        >>> import jax.numpy as jnp
        >>> state = diis_init(4, (1, 3, 3), jnp.float32)
        >>> state.focks.shape, int(state.valid.sum())
        ((4, 1, 3, 3), 0)
    """
    blocks = jnp.zeros((space, *block_shape), dtype)
    return DIISState(
        densities=blocks,
        focks=blocks,
        errors=blocks,
        energies=jnp.zeros((space,), dtype),
        valid=jnp.zeros((space,), bool),
        head=jnp.zeros((), jnp.int32),
    )


def diis_push(
    state: DIISState, density: jax.Array, fock: jax.Array, error: jax.Array, energy: jax.Array
) -> DIISState:
    """Store one iterate, overwriting the oldest entry once the buffer is full.

    Example:
        >>> import jax.numpy as jnp
        >>> state = diis_init(2, (1, 2, 2), jnp.float32)
        >>> block = jnp.ones((1, 2, 2))
        >>> for _ in range(3):
        ...     state = diis_push(state, block, block, block, jnp.zeros(()))
        >>> int(state.valid.sum()), int(state.head)
        (2, 1)
    """
    slot = state.head
    return DIISState(
        densities=state.densities.at[slot].set(density),
        focks=state.focks.at[slot].set(fock),
        errors=state.errors.at[slot].set(error),
        energies=state.energies.at[slot].set(energy),
        valid=state.valid.at[slot].set(True),
        head=(slot + 1) % state.valid.shape[0],
    )


def _newest(state: DIISState) -> jax.Array:
    return (state.head - 1) % state.valid.shape[0]


def _pairwise(a: jax.Array, b: jax.Array) -> jax.Array:
    """Frobenius inner products ``<a_i, b_j>`` summed over spin blocks, ``(space, space)``."""
    return jnp.einsum("isab,jsab->ij", a, b)


def cdiis_coefficients(state: DIISState) -> jax.Array:
    """Pulay coefficients: minimise ``|sum_i c_i e_i|`` subject to ``sum_i c_i = 1``.

    The bordered system is solved with an eigenvalue pseudo-inverse of the error-overlap matrix
    scaled to unit largest diagonal, so (nearly) linearly dependent errors never give NaN.
    Empty slots get coefficient 0.

    Example:
        >>> import jax.numpy as jnp
        >>> state = diis_init(3, (1, 1, 1), jnp.float32)
        >>> for e in (1.0, -1.0):
        ...     block = jnp.full((1, 1, 1), e)
        ...     state = diis_push(state, block, block, block, jnp.zeros(()))
        >>> [round(c, 6) for c in cdiis_coefficients(state).tolist()]
        [0.5, 0.5, 0.0]
    """
    valid = state.valid
    overlap = _pairwise(state.errors, state.errors)
    scale = jnp.max(jnp.where(valid, jnp.diagonal(overlap), 0.0))
    overlap = overlap / jnp.where(scale > 0.0, scale, 1.0)
    pair_valid = valid[:, None] & valid[None, :]
    overlap = jnp.where(pair_valid, overlap, jnp.eye(valid.shape[0], dtype=overlap.dtype))
    border = valid.astype(overlap.dtype)
    bordered = jnp.block([[jnp.zeros((1, 1), overlap.dtype), border[None, :]],
                          [border[:, None], overlap]])  # fmt: skip
    rhs = jnp.zeros(bordered.shape[0], overlap.dtype).at[0].set(1.0)
    eigenvalues, vectors = jnp.linalg.eigh(bordered)
    keep = jnp.abs(eigenvalues) > _PSEUDO_INVERSE_CUTOFF * jnp.max(jnp.abs(eigenvalues))
    inverse = jnp.where(keep, 1.0 / jnp.where(keep, eigenvalues, 1.0), 0.0)
    solution = vectors @ (inverse * (vectors.T @ rhs))
    coefficients = jnp.where(valid, solution[1:], 0.0)
    fallback = jax.nn.one_hot(_newest(state), valid.shape[0], dtype=overlap.dtype)
    return jnp.where(jnp.all(jnp.isfinite(coefficients)), coefficients, fallback)


def _project_to_simplex(v: jax.Array, valid: jax.Array) -> jax.Array:
    """Euclidean projection of ``v`` onto ``{c >= 0, sum c = 1, c = 0 off valid}``."""
    order = jnp.argsort(jnp.where(valid, -v, jnp.inf))
    u = v[order]
    u_valid = valid[order]
    cumulative = jnp.cumsum(jnp.where(u_valid, u, 0.0)) - 1.0
    rank = jnp.arange(1, v.shape[0] + 1, dtype=v.dtype)
    active = u_valid & (u - cumulative / rank > 0.0)
    count = jnp.max(jnp.where(active, rank, 1.0))
    theta = cumulative[count.astype(jnp.int32) - 1] / count
    return jnp.where(valid, jnp.maximum(v - theta, 0.0), 0.0)


def minimize_on_simplex(linear: jax.Array, quadratic: jax.Array, valid: jax.Array) -> jax.Array:
    """Minimise ``linear . c + c^T quadratic c / 2`` over convex coefficients on ``valid``.

    A fixed number of accelerated projected-gradient steps (step ``1/L``, ``L`` the spectral
    norm of ``quadratic``, bounded below by 1% of the largest ``|linear|``) from the uniform
    combination; the valid ``linear`` entries are centred first (a constant does not change
    the minimiser); ``quadratic`` need not be definite, in
    which case a local minimum is returned.

    Example:
        >>> import jax.numpy as jnp
        >>> valid = jnp.array([True, True, False])
        >>> c = minimize_on_simplex(jnp.array([0.0, 1.0, -5.0]), jnp.eye(3), valid)
        >>> [round(x, 6) for x in c.tolist()]
        [1.0, 0.0, 0.0]
    """
    quadratic = jnp.where(valid[:, None] & valid[None, :], 0.5 * (quadratic + quadratic.T), 0.0)
    count = jnp.sum(valid)
    linear = jnp.where(valid, linear - jnp.sum(jnp.where(valid, linear, 0.0)) / count, 0.0)
    lipschitz = jnp.max(jnp.abs(jnp.linalg.eigvalsh(quadratic)))
    # For a (nearly) linear objective, a step that moves at most ~100 per iteration still reaches
    # the best vertex, without losing the coefficients to round-off in a huge step.
    floor = 1e-2 * jnp.max(jnp.abs(linear)) + jnp.finfo(linear.dtype).tiny
    step = 1.0 / jnp.maximum(lipschitz, floor)
    start = jnp.where(valid, 1.0 / count, 0.0)

    def accelerated_step(k, carry):
        c, previous = carry
        y = c + (k / (k + 3.0)) * (c - previous)
        return _project_to_simplex(y - step * (linear + quadratic @ y), valid), c

    coefficients, _ = jax.lax.fori_loop(0, _SIMPLEX_STEPS, accelerated_step, (start, start))
    return coefficients


def adiis_coefficients(state: DIISState) -> jax.Array:
    """ADIIS: convex coefficients minimising the ARH energy model around the newest iterate.

    ``E(sum c_i D_i) ~ E_n + sum_i c_i <D_i - D_n, F_n> + 1/2 sum_ij c_i c_j <D_i - D_n,
    F_j - F_n>`` (exact for Hartree-Fock, whose energy is quadratic in the density).

    Example:
        >>> import jax.numpy as jnp
        >>> state = diis_init(2, (1, 1, 1), jnp.float32)
        >>> for d, f in ((0.0, 1.0), (1.0, 0.5)):
        ...     dm, fock = jnp.full((1, 1, 1), d), jnp.full((1, 1, 1), f)
        ...     state = diis_push(state, dm, fock, fock, jnp.zeros(()))
        >>> [round(x, 3) for x in adiis_coefficients(state).tolist()]
        [1.0, 0.0]
    """
    newest = _newest(state)
    delta_d = state.densities - state.densities[newest]
    delta_f = state.focks - state.focks[newest]
    linear = jnp.einsum("isab,sab->i", delta_d, state.focks[newest])
    return minimize_on_simplex(linear, _pairwise(delta_d, delta_f), state.valid)


def ediis_coefficients(state: DIISState) -> jax.Array:
    """EDIIS: convex coefficients minimising the interpolated energy.

    ``E(sum c_i D_i) = sum_i c_i E_i - 1/4 sum_ij c_i c_j <D_i - D_j, F_i - F_j>`` (exact for
    a quadratic energy; 1/4 because the inner products run over full densities).

    Example:
        >>> import jax.numpy as jnp
        >>> state = diis_init(2, (1, 1, 1), jnp.float32)
        >>> for e in (-1.0, -2.0):
        ...     block = jnp.zeros((1, 1, 1))
        ...     state = diis_push(state, block, block, block, jnp.asarray(e))
        >>> [round(x, 3) for x in ediis_coefficients(state).tolist()]
        [0.0, 1.0]
    """
    d_dot_f = _pairwise(state.densities, state.focks)
    diagonal = jnp.diagonal(d_dot_f)
    cross = diagonal[:, None] + diagonal[None, :] - d_dot_f - d_dot_f.T
    return minimize_on_simplex(state.energies, -0.5 * cross, state.valid)


def energy_diis_fock(state: DIISState, method: str) -> jax.Array:
    """Extrapolated Fock matrix of ``method`` (``"cdiis"``, ``"adiis"`` or ``"ediis"``).

    For ``"adiis"``/``"ediis"`` the energy-based coefficients are blended into CDIIS by the
    largest absolute element ``e`` of the newest error: weight 1 above 0.1, ``10 e`` between
    1e-4 and 0.1, 0 below.

    Example:
        >>> import jax.numpy as jnp
        >>> state = diis_init(2, (1, 1, 1), jnp.float32)
        >>> block = jnp.full((1, 1, 1), 3.0)
        >>> state = diis_push(state, block, block, block, jnp.zeros(()))
        >>> energy_diis_fock(state, "adiis").tolist()
        [[[3.0]]]
    """
    coefficients = cdiis_coefficients(state)
    if method != "cdiis":
        energy_based = (adiis_coefficients if method == "adiis" else ediis_coefficients)(state)
        error = jnp.max(jnp.abs(state.errors[_newest(state)]))
        weight = jnp.where(error > _ENERGY_ONLY_ABOVE, 1.0, 10.0 * error)
        weight = jnp.where(error < _CDIIS_ONLY_BELOW, 0.0, weight)
        coefficients = weight * energy_based + (1.0 - weight) * coefficients
    return jnp.einsum("i,isab->sab", coefficients, state.focks)
