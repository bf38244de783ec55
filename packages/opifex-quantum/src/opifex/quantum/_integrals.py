"""All the integrals an SCF needs: one-electron matrices and blocked, screened ERIs.

Small bases get the dense ``(n, n, n, n)`` tensor from ``opifex.quantum._two_electron`` (every
unique quartet in one shot: quick to compile); larger ones Coulomb and exchange supermatrices
(``ERISupermatrix``, about half the memory, faster Fock builds) from the blocked loops of
``opifex.quantum._eri_engine``, whose compiled size does not grow with the molecule; when
those do not fit ``max_memory``, the Coulomb supermatrix alone (half the memory; exchange
gathered from it per Fock build), and when that does not fit either, no stored integrals at
all (``DirectERI``: direct SCF, the blocked loops run again on every Fock build). There, with
concrete coordinates, quartets whose Schwarz bound ``sqrt((AB|AB)) sqrt((CD|CD))`` is below
``screening`` are skipped; under a transformation (traced coordinates) every quartet is computed,
because the bound needs numbers. With an auxiliary basis, density-fitted integrals
(``DensityFittedERI``, ``opifex.quantum._density_fitting``) instead of exact ones.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from opifex.core import check_choice
from opifex.quantum._basis import BasisSet
from opifex.quantum._density_fitting import (
    DensityFittedERI,
    auxiliary_shell_bounds,
    coulomb_metric,
    fitted_factor,
    plan_arrays,
    three_centre,
)
from opifex.quantum._df_plan import metric_plan, three_centre_plan
from opifex.quantum._direct import DirectERI
from opifex.quantum._eri_engine import (
    coulomb_supermatrix,
    plan_arguments,
    schwarz_pair_bounds,
)
from opifex.quantum._eri_plan import (
    diagonal_plan,
    pair_layout,
    primitive_selection,
    quartet_plan,
)
from opifex.quantum._eri_supermatrix import ERISupermatrix, exchange_supermatrix
from opifex.quantum._heap import release_free_heap
from opifex.quantum._integrals_types import Integrals
from opifex.quantum._molecule import nuclear_repulsion
from opifex.quantum._one_electron import one_electron_from_pairs
from opifex.quantum._precision import require_x64
from opifex.quantum._shell_pairs import primitive_pairs, shell_pairs
from opifex.quantum._two_electron import eri_from_pairs

ERI_LAYOUTS = ("auto", "dense", "supermatrix", "coulomb_supermatrix", "direct", "density_fitted")
DENSE_MAX_FUNCTIONS = 48
"""``eri_layout="auto"`` keeps the dense tensor up to this many functions (42 MB)."""
MAX_MEMORY_MB = 4000
"""Default budget (MB) of the stored electron-repulsion integrals (PySCF's ``max_memory``)."""
SCREENING_THRESHOLD = 1e-14
"""Default Schwarz threshold (Eh): quartets whose bound is below it are not computed."""
_RELEASE_HEAP_MB = 100
"""Stored integrals above this size are compiled first and the freed heap released before."""


def _pairs(basis: BasisSet, coordinates: jax.Array) -> list:
    classes, _ = shell_pairs(basis)
    return [primitive_pairs(pc, coordinates) for pc in classes]


@functools.partial(jax.jit, static_argnames=("basis", "keys"))
def _schwarz_bounds(basis: BasisSet, coordinates: jax.Array, arrays: tuple, *, keys) -> jax.Array:
    return schwarz_pair_bounds(basis, keys, arrays, _pairs(basis, coordinates))


@functools.cache
def _full_plan(basis: BasisSet) -> tuple:
    selection = primitive_selection(basis)
    return plan_arguments(quartet_plan(basis, selection=selection), selection)


@functools.cache
def _diagonal_plan(basis: BasisSet) -> tuple:
    return plan_arguments(diagonal_plan(basis), primitive_selection(basis))


def integral_plan(basis: BasisSet, coordinates, screening: float, by_bound: bool = False) -> tuple:
    """The blocked quartets to compute: screened at concrete coordinates, else all of them.

    Screening drops shell quartets by their Schwarz bound and primitive pairs whose bound on
    any primitive integral is below ``screening / 100`` (``primitive_selection``).
    ``by_bound`` orders the quartets by their bound (for the density screening of direct SCF).

    Returns:
        ``(keys, arrays, pair_bound)``: ``keys`` and ``arrays`` as
        ``opifex.quantum._eri_engine.plan_arguments`` gives them, and the Schwarz bound of
        every shell pair (None when nothing is screened).
    """
    if screening <= 0.0 or isinstance(coordinates, jax.core.Tracer):
        return (*_full_plan(basis), None)
    keys, arrays = _diagonal_plan(basis)
    bounds = np.asarray(_schwarz_bounds(basis, jnp.asarray(coordinates), arrays, keys=keys))
    selection = primitive_selection(basis, np.asarray(coordinates), screening / 100)
    plan = quartet_plan(basis, bounds, screening, selection, by_bound)
    return (*plan_arguments(plan, selection), bounds)


@functools.partial(jax.jit, static_argnames=("aux", "keys"))
def _metric(aux: BasisSet, coordinates: jax.Array, quartets: tuple, *, keys) -> jax.Array:
    return coulomb_metric(aux, coordinates, keys, quartets)


@functools.cache
def _metric_plan(aux: BasisSet) -> tuple:
    return plan_arrays(metric_plan(aux))


def fitting_plan(basis: BasisSet, aux: BasisSet, coordinates, screening: float) -> tuple:
    """The blocked 2- and 3-centre integrals of density fitting, screened at concrete coordinates.

    Combinations ``(AB|P)`` with ``sqrt((AB|AB)) sqrt((P|P)) < screening`` are skipped. The
    metric computed for the screening is handed on (``_compute`` does not compute it again).

    Returns:
        ``((metric keys, three-centre keys), (metric arrays, three-centre arrays, metric))``;
        ``metric`` is None under a transformation or without screening.
    """
    metric_keys, metric_arrays = _metric_plan(aux)
    metric = None
    if screening <= 0.0 or isinstance(coordinates, jax.core.Tracer):
        plan = three_centre_plan(basis, aux)
    else:
        keys, arrays = _diagonal_plan(basis)
        xyz = jnp.asarray(coordinates)
        pair_bound = np.asarray(_schwarz_bounds(basis, xyz, arrays, keys=keys))
        metric = _metric(aux, xyz, metric_arrays, keys=metric_keys)
        aux_bound = auxiliary_shell_bounds(aux, np.asarray(metric))
        plan = three_centre_plan(basis, aux, pair_bound, aux_bound, screening)
    three_keys, three_arrays = plan_arrays(plan)
    return (metric_keys, three_keys), (metric_arrays, three_arrays, metric)


def _electron_repulsion(basis, aux, eri_layout, coordinates, pairs, keys, arrays, pair_bound):
    """The ``eri`` of ``Integrals`` in the requested layout (traced)."""
    if eri_layout == "dense":
        return eri_from_pairs(basis, pairs)
    if eri_layout == "direct":
        return DirectERI(
            pairs=tuple(pairs), plan=arrays, pair_bound=pair_bound, basis=basis, keys=keys
        )
    if eri_layout in ("supermatrix", "coulomb_supermatrix"):
        coulomb = coulomb_supermatrix(basis, keys, arrays, pairs)
        if eri_layout == "coulomb_supermatrix":
            return ERISupermatrix(coulomb, None, basis)
        return ERISupermatrix(coulomb, exchange_supermatrix(coulomb, pair_layout(basis)), basis)
    metric = arrays[2]
    if metric is None:
        metric = coulomb_metric(aux, coordinates, keys[0], arrays[0])
    pair_integrals = three_centre(basis, aux, coordinates, keys[1], arrays[1])
    return DensityFittedERI(fitted_factor(pair_integrals, metric), basis, aux)


@functools.partial(jax.jit, static_argnames=("basis", "aux", "eri_layout", "keys"))
def _compute(
    basis: BasisSet,
    coordinates: jax.Array,
    nuclear_charges: jax.Array,
    arrays: tuple,
    pair_bound: jax.Array | None,
    *,
    aux: BasisSet | None,
    eri_layout: str,
    keys: tuple,
) -> Integrals:
    pairs = _pairs(basis, coordinates)
    overlap, kinetic, nuclear = one_electron_from_pairs(basis, pairs, coordinates, nuclear_charges)
    eri = _electron_repulsion(basis, aux, eri_layout, coordinates, pairs, keys, arrays, pair_bound)
    return Integrals(
        overlap, kinetic, nuclear, eri, nuclear_repulsion(coordinates, nuclear_charges)
    )


def compute_integrals(
    basis: BasisSet,
    coordinates: jax.Array,
    nuclear_charges: jax.Array,
    *,
    eri_layout: str = "auto",
    screening: float = SCREENING_THRESHOLD,
    auxbasis: BasisSet | None = None,
    max_memory: float = MAX_MEMORY_MB,
) -> Integrals:
    """Overlap, kinetic, nuclear-attraction and electron-repulsion integrals, and ``E_nuc``.

    Compiled once per basis set and screening outcome (``basis`` is static, the quartet lists
    are arguments of the compiled program); ``coordinates`` may be traced, so the call works
    under ``jax.jit``, ``jax.vmap`` over geometries and ``jax.grad`` / ``jax.jacfwd``.

    Args:
        basis: the basis set placed on the atoms (static).
        coordinates: ``(n_atoms, 3)`` nuclear positions in Bohr.
        nuclear_charges: ``(n_atoms,)`` nuclear charges.
        eri_layout: ``"dense"`` (an ``(n, n, n, n)`` array), ``"supermatrix"`` (an
            ``ERISupermatrix``), ``"coulomb_supermatrix"`` (one without its exchange
            supermatrix: half the memory, exchange gathered per Fock build), ``"direct"`` (a
            ``DirectERI``: nothing stored, direct SCF), ``"density_fitted"`` (a
            ``DensityFittedERI``; needs ``auxbasis``) or ``"auto"``: density fitted when
            ``auxbasis`` is given, else the first that fits ``max_memory`` of dense (up to
            ``DENSE_MAX_FUNCTIONS`` functions) or supermatrices (beyond), the Coulomb
            supermatrix, and direct.
        screening: Schwarz threshold of the blocked layouts (all but dense); ``0``
            computes every unique quartet. Applied only when ``coordinates`` are concrete.
        auxbasis: the auxiliary basis set of density fitting (RI-JK), placed on the same atoms
            (e.g. ``build_basis(atoms, "def2-universal-jkfit")``), or None for exact integrals.
        max_memory: budget in MB for the integrals held in memory (``eri_memory_mb``); a
            layout asked for by name that needs more is refused with a ``MemoryError`` before
            anything is allocated (``"auto"`` falls back to direct).

    Returns:
        The ``Integrals`` (float64), matrices over ``basis.n_functions`` functions.

    Raises:
        RuntimeError: if 64-bit floats are off.
        ValueError: if the shapes do not match the basis, for an unknown ``eri_layout``, or an
            ``auxbasis`` missing for, or given with, a layout that does (not) use one.
        MemoryError: if the integrals would need more than ``max_memory`` MB.

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
    if not np.isfinite(screening) or screening < 0:
        raise ValueError(f"screening must be a finite number >= 0, got {screening!r}")
    eri_layout = _resolved_layout(basis, eri_layout, auxbasis, max_memory)
    _check_memory(basis, eri_layout, auxbasis, max_memory)
    pair_bound = None  # kept for the density screening of direct SCF
    if eri_layout == "dense":
        keys, arrays = (), ()
    elif eri_layout in ("supermatrix", "coulomb_supermatrix", "direct"):
        direct = eri_layout == "direct"
        keys, arrays, bound = integral_plan(basis, coordinates, screening, by_bound=direct)
        pair_bound = bound if direct else None
    else:
        keys, arrays = fitting_plan(basis, auxbasis, coordinates, screening)
    args = (basis, coordinates, nuclear_charges, arrays, pair_bound)
    static = {"aux": auxbasis, "eri_layout": eri_layout, "keys": keys}
    traced = isinstance(coordinates, jax.core.Tracer)
    if traced or eri_memory_mb(basis, eri_layout, auxbasis) <= _RELEASE_HEAP_MB:
        return _compute(*args, **static)
    # compile (a no-op when cached), then give the compiler's and the plan's freed heap back,
    # so that it does not lie beside the integrals in resident memory; again after the run
    # (the program's copies of the plan's arrays)
    _compute.lower(*args, **static).compile()
    release_free_heap()
    integrals = jax.block_until_ready(_compute(*args, **static))
    release_free_heap()
    return integrals


def eri_memory_mb(basis: BasisSet, eri_layout: str, auxbasis: BasisSet | None = None) -> float:
    """MB of the electron-repulsion integrals of a layout (what ``max_memory`` limits).

    Dense: ``8 n^4`` bytes; supermatrices: two ``n_ext^2`` float64 matrices (one for
    ``"coulomb_supermatrix"``); direct: none;
    density fitted: ``B`` and the raw 3-centre integrals it is made from (``8 n_aux n_ext``
    bytes each), both alive while ``B`` is formed.

    Example:
        >>> from opifex.quantum._basis import build_basis
        >>> round(eri_memory_mb(build_basis([8, 1, 1], "6-31g"), "dense"), 3)
        0.228
    """
    n = basis.n_functions
    if eri_layout == "dense":
        count = n**4
    elif eri_layout in ("supermatrix", "coulomb_supermatrix"):
        count = (2 if eri_layout == "supermatrix" else 1) * pair_layout(basis).n_ext ** 2
    elif eri_layout == "direct":
        count = 0
    else:
        count = 2 * auxbasis.n_functions * pair_layout(basis).n_ext
    return 8.0 * count / 1e6


def _check_memory(basis, eri_layout, auxbasis, max_memory) -> None:
    if not isinstance(max_memory, int | float) or not max_memory > 0:
        raise ValueError(f"max_memory must be a positive number of MB, got {max_memory!r}")
    needed = eri_memory_mb(basis, eri_layout, auxbasis)
    if needed > max_memory:
        hint = (
            "use eri_layout='direct' (or 'auto'), pass auxbasis (density fitting, e.g. "
            "'def2-universal-jkfit') or a larger max_memory"
            if auxbasis is None
            else "raise max_memory"
        )
        raise MemoryError(
            f"{eri_layout} integrals of {basis.n_functions} functions need {needed:.0f} MB, "
            f"more than max_memory={max_memory:g} MB; {hint}"
        )


def _resolved_layout(
    basis: BasisSet, eri_layout: str, auxbasis: BasisSet | None, max_memory: float
) -> str:
    """``eri_layout`` with ``"auto"`` resolved; checks that ``auxbasis`` goes with it."""
    check_choice(eri_layout, ERI_LAYOUTS, "eri_layout")
    if auxbasis is not None:
        if not isinstance(auxbasis, BasisSet):
            raise TypeError(f"auxbasis must be a BasisSet or None, got {type(auxbasis).__name__}")
        if auxbasis.atomic_numbers != basis.atomic_numbers:
            raise ValueError(
                f"auxbasis is placed on atoms {auxbasis.atomic_numbers}, the basis on "
                f"{basis.atomic_numbers}"
            )
        if auxbasis.cartesian != basis.cartesian:
            raise ValueError("auxbasis and basis must both be cartesian or both spherical")
        if eri_layout not in ("auto", "density_fitted"):
            raise ValueError(
                f"auxbasis is only used by eri_layout='density_fitted', not {eri_layout!r}"
            )
        return "density_fitted"
    if eri_layout == "density_fitted":
        raise ValueError("eri_layout='density_fitted' needs an auxbasis")
    if eri_layout == "auto":
        stored = "dense" if basis.n_functions <= DENSE_MAX_FUNCTIONS else "supermatrix"
        budget = max_memory if isinstance(max_memory, int | float) else 0  # checked next
        for layout in (stored, "coulomb_supermatrix", "direct"):
            if not budget > 0 or eri_memory_mb(basis, layout) <= budget:
                return layout
    return eri_layout
