"""Settings of one SCF run: tolerances, DIIS flavour, level shift, damping and the retry."""

from __future__ import annotations

import dataclasses
import math
import warnings

from opifex.core import check_choice, check_int_at_least, check_positive, renamed_fields

DIIS_METHODS = ("cdiis", "adiis", "ediis", None)
# Orbital-gradient tolerance of the SCF behind nuclear gradients: an energy's error is second
# order in the orbital gradient left at convergence, a nuclear gradient's is first order.
FORCE_CONV_TOL_GRAD = 1e-6


@renamed_fields(max_scf_iterations="max_steps", retry_max_iterations="retry_max_steps")
@dataclasses.dataclass(frozen=True)
class SCFConfig:
    """How the SCF iterates and when it stops (frozen and hashable: a static ``jit`` argument).

    A cycle is one Fock-matrix diagonalisation followed by one Fock build of the new density,
    starting from the guess density: PySCF counts its ``cycles`` the same way, so cycle counts
    (``SolveResult.num_steps``) compare one to one.

    The names follow opifex's vocabulary (``max_steps`` for a budget) and PySCF's for the
    tolerances (``conv_tol``, ``conv_tol_grad``). The earlier spellings ``max_scf_iterations``
    and ``retry_max_iterations`` (keywords and attributes) and the property
    ``retry_iterations`` still work, with a ``DeprecationWarning``, until the next release.

    Attributes:
        conv_tol: converged when the total-energy change of the last cycle is below this (Eh).
        conv_tol_grad: ... and the orbital-gradient norm is below this; ``None`` means
            ``sqrt(conv_tol)``. The norm is ``||X^T (F D S - S D F) X||_F / sqrt(2)`` summed
            over spin blocks (``X`` orthonormalises the basis, ``D`` is the total RHF density or
            the alpha and beta UHF densities). For an idempotent density it equals the
            Frobenius norm of PySCF's orbital gradient ``|g|`` (``2 C_vir^T F C_occ`` for RHF,
            the alpha and beta ``C_vir^T F C_occ`` blocks for UHF).
        max_steps: cycle budget of the first attempt.
        diis: Fock extrapolation: ``"cdiis"`` (Pulay's commutator DIIS), ``"adiis"`` (ADIIS of
            Hu and Yang 2010 while the error is large, blended into CDIIS as it shrinks, as
            Garza and Scuseria 2012 do with EDIIS), ``"ediis"`` (EDIIS of Kudin, Scuseria and
            Cances 2002, same blending), or ``None`` (plain Roothaan iterations).
        diis_space: number of Fock matrices DIIS keeps.
        diis_start_cycle: first cycle (0-based) whose Fock matrix enters DIIS; PySCF's default
            1 leaves out the guess Fock matrix.
        level_shift: shift (Eh) added to the virtual orbital energies of every cycle.
        damping: weight of the previous density in each new density (0 = none, < 1).
        retry_level_shift: level shift of a second attempt started from the last density when
            the first one does not converge within ``max_steps`` cycles.
        retry_damping: damping of that second attempt. The retry runs when either retry
            setting is non-zero.
        retry_max_steps: cycle budget of the second attempt; ``None`` means ``max_steps``.

    Example:
        >>> config = SCFConfig(conv_tol=1e-10, diis="adiis")
        >>> config.gradient_tolerance
        1e-05
        >>> SCFConfig(retry_level_shift=0.5).retry_enabled
        True
        >>> SCFConfig(max_steps=30, retry_damping=0.5, retry_max_steps=20).total_max_steps
        50
    """

    conv_tol: float = 1e-9
    conv_tol_grad: float | None = None
    max_steps: int = 50
    diis: str | None = "cdiis"
    diis_space: int = 8
    diis_start_cycle: int = 1
    level_shift: float = 0.0
    damping: float = 0.0
    retry_level_shift: float = 0.0
    retry_damping: float = 0.0
    retry_max_steps: int | None = None

    def __post_init__(self) -> None:
        check_positive(self.conv_tol, "conv_tol")
        if self.conv_tol_grad is not None:
            check_positive(self.conv_tol_grad, "conv_tol_grad")
        check_int_at_least(self.max_steps, 1, "max_steps")
        check_choice(self.diis, DIIS_METHODS, "diis")
        check_int_at_least(self.diis_space, 2, "diis_space")
        check_int_at_least(self.diis_start_cycle, 0, "diis_start_cycle")
        for name in ("level_shift", "retry_level_shift", "damping", "retry_damping"):
            check_positive(getattr(self, name), name, allow_zero=True)
        for name in ("damping", "retry_damping"):
            if getattr(self, name) >= 1.0:
                raise ValueError(f"{name} must be < 1, got {getattr(self, name)!r}")
        if self.retry_max_steps is not None:
            check_int_at_least(self.retry_max_steps, 1, "retry_max_steps")

    @property
    def gradient_tolerance(self) -> float:
        """The orbital-gradient tolerance actually used (``conv_tol_grad`` or its default)."""
        if self.conv_tol_grad is None:
            return math.sqrt(self.conv_tol)
        return self.conv_tol_grad

    @property
    def retry_enabled(self) -> bool:
        """Whether a non-converged first attempt is followed by a shifted/damped second one."""
        return self.retry_level_shift > 0.0 or self.retry_damping > 0.0

    @property
    def total_max_steps(self) -> int:
        """The whole cycle budget: ``max_steps`` plus the retry's when the retry is enabled."""
        if not self.retry_enabled:
            return self.max_steps
        return self.max_steps + (
            self.max_steps if self.retry_max_steps is None else self.retry_max_steps
        )

    @property
    def retry_iterations(self) -> int:
        """Deprecated: cycles of the second attempt, ``total_max_steps - max_steps``."""
        warnings.warn(
            "SCFConfig: 'retry_iterations' is deprecated and will be removed in the next "
            "release; use 'total_max_steps - max_steps'",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.total_max_steps - self.max_steps
