"""Gauss-Newton and Levenberg-Marquardt for ``min 0.5 ||r(params, *args)||^2``.

Every method shares one outer iteration, modelled on MINPACK's ``lmder`` (Moré 1978): the
iteration starts with the Jacobian ``J`` at the current point, tries steps until one is
accepted (actual over predicted reduction of ``||r||^2`` at least ``1e-4``), then evaluates
``J`` at the new point. Rejected trials cost one residual evaluation each, so ``num_steps``
counts Jacobians as MINPACK's ``njev`` does (plus one per rejected leap, see below).

* ``levenberg_marquardt`` (the default) solves ``(J^T J + mu D) dx = -J^T r`` with
  Marquardt's scaling ``D = diag(J^T J)``, kept as a running maximum over iterations as in
  MINPACK. The damping ``mu`` follows one of two rules (``damping_update``; ``"auto"`` picks
  ``"trust_region"`` on the dense path and ``"nielsen"`` on the matrix-free one):

  - ``"nielsen"`` (Nielsen 1999): on acceptance ``mu *= max(1/3, 1 - (2 rho - 1)^3)``,
    ``nu = 2``; on rejection ``mu *= nu``, ``nu *= 2``; ``mu_0 = damping``. After a very
    successful iteration (``rho >= 0.75``) the first trial of the next one is the undamped
    (minimum-norm) Gauss-Newton step, kept if its ``rho >= 0.25`` -- what MINPACK's trust
    region does when the Gauss-Newton step fits inside it, so the end game converges
    quadratically instead of waiting for ``mu`` to decay by a factor 3 per iteration
    (dense path only).
  - ``"trust_region"`` (Moré 1978, MINPACK's ``lmder`` / ``lmpar``): ``mu`` is the
    Lagrange multiplier that puts the scaled step on the trust-region boundary
    ``||D^{1/2} dx|| = delta`` (``mu = 0`` when the Gauss-Newton step fits), found by
    Moré's safeguarded Newton iteration; ``delta`` grows and shrinks with ``rho`` exactly
    as in ``lmder`` (dense path only).

* ``gauss_newton``: the minimum-norm Gauss-Newton step, shortened by halving until accepted
  (a backtracking line search on ``||r||^2``).

Dense path (``linear_solver="dense"``): the Jacobian of the raveled residual is materialised
(``jacfwd`` or ``jacrev``) and the column-scaled Jacobian ``J D^{-1/2} = U S V^T`` is factored
once per iteration by an SVD. Every trial damping is then an ``O(n^2)`` solve,
``D^{1/2} dx = -V diag(s / (s^2 + mu)) U^T r`` -- the least-squares solution of the augmented
system ``[J; sqrt(mu) D^{1/2}] dx = -[r; 0]``, with no normal equations formed, stable for
rank-deficient ``J``. Matrix-free path (``linear_solver="cg"``): Jacobian-vector products from
``jax.linearize`` and their transpose, and ``jax.scipy.sparse.linalg.cg`` on the damped normal
equations; the scaling is then a scalar (a running maximum of the Rayleigh quotient
``||J g||^2 / ||g||^2`` at the gradient ``g``).

Convergence: ``SUCCESS`` means that ``params`` is as accurate as the arithmetic allows, or as
a stated tolerance asks. With ``eps`` the machine epsilon of the parameters' dtype and
``rho = eps (||J diag(x)||_F + ||r||)`` the rounding error of a residual vector computed at
``x`` (the size of the model's terms times ``eps``):

* Attainable precision (dense path, tested before every iteration at no extra cost): the
  Gauss-Newton correction would change ``r`` by at most ``10 rho``, and so would a step along
  any one parameter (``max_j |J_j^T r| / ||J_j|| <= 10 rho``, which also sees the directions
  that the SVD's rank cutoff drops).
* MINPACK's tests: ``ftol`` (actual and predicted relative reductions of ``||r||^2`` by an
  accepted step), ``xtol`` (relative scaled step, or trust radius, at a point stationary to the
  same precision, see below), ``gtol`` (the largest cosine between ``r`` and a column of
  ``J``). Their defaults follow the dtype and lie at rounding level (``xtol = gtol = eps``,
  ``ftol = eps**2``), so that by default the iteration runs to attainable precision; MINPACK's
  own ``1e-8`` gives only 3-6 correct digits on hard problems such as NIST's.
* An absolute ``atol`` on ``||J^T r||`` (off by default).

A trial step whose predicted and actual changes of ``||r||^2`` are both within its rounding
error (``2 ||r|| rho + rho^2``) cannot be checked and is taken as exact, so that the iteration
still progresses where ``||r||^2`` is noisy (small residuals, ill-conditioned ``J``). A step
after which a column of ``J`` falls below ``eps`` times its norm (a parameter carried to where
the residual no longer depends on it, such as ``exp(-b t)`` underflowing, from where no local
method returns) is rejected as a leap, at the cost of its Jacobian. When no step can make
progress any more (a trial rejected at rounding level, ``max_inner_steps`` rejections, or a
step at rounding level that reduces neither ``||J^T r||`` nor the Gauss-Newton correction),
the status is ``SUCCESS`` if ``x`` is stationary as far as values of ``||r||^2`` can tell (the
largest cosine between ``r`` and a column of ``J`` at most ``10 (min(sqrt(delta), eps**0.25)
+ xtol (||J diag(x)||_F + ||r||) / ||r||)``, ``delta`` the relative rounding error of
``||r||^2``: where ``J`` is nearly singular at a minimum with a large residual the attainable
precision of ``x`` is about ``sqrt(eps)``; and no column of ``J`` explains more of ``r`` than
the Gauss-Newton correction, which would mean that the SVD's rank cutoff hides a direction of
progress), and ``STALLED`` otherwise (a kink, a wrong Jacobian, a direction the arithmetic
cannot resolve, or a residual too small for its values to tell).

``least_squares`` differentiates the solution with respect to ``args`` through
``opifex.core.run_solver``'s implicit adjoint on the optimality condition ``J^T r = 0``.

References:
    Moré, J. J. (1978), "The Levenberg-Marquardt algorithm: implementation and theory",
    Numerical Analysis, Lecture Notes in Mathematics 630, 105-116.
    Nielsen, H. B. (1999), "Damping parameter in Marquardt's method", IMM-REP-1999-05, DTU.
    Madsen, K., Nielsen, H. B. & Tingleff, O. (2004), "Methods for non-linear least squares
    problems", 2nd ed., DTU.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

from opifex.core import (
    SolveResult,
    SolveStatus,
    check_choice,
    check_int_at_least,
    check_positive,
    renamed_fields,
    tree_where,
)
from opifex.second_order._budgeted import solve_with_budget
from opifex.second_order._validation import (
    check_callable,
    check_params,
    check_residual,
    resolve_config,
)

METHODS = ("gauss_newton", "levenberg_marquardt")
DAMPING_UPDATES = ("auto", "nielsen", "trust_region")
LINEAR_SOLVERS = ("dense", "cg")
JACOBIANS = ("jacfwd", "jacrev")
# MINPACK accepts a step when the actual reduction is at least this fraction of the predicted
_ACCEPT_RATIO = 1e-4
# Nielsen path: an undamped Gauss-Newton trial is kept when its ratio is at least this
_GN_TRIAL_RATIO = 0.25
# ... and is tried after an iteration whose accepted ratio was at least this
_GOOD_MODEL_RATIO = 0.75
# attainable precision: the Gauss-Newton correction changes r by at most this many times
# eps (||J diag(x)||_F + ||r||)
_ATTAINABLE = 10.0
# stationary to the resolution of ||r||^2: MINPACK's cosine at most this many times the square
# root of the relative rounding error of ||r||^2
_STATIONARY = 10.0
# default budget: max_steps = _ITERATIONS_PER_UNKNOWN * (n + 1), the form of MINPACK's
# 100 (n + 1) function evaluations
_ITERATIONS_PER_UNKNOWN = 500
# Moré's lmpar: at most this many Newton iterations for the damping, 10 % accuracy on delta
_LMPAR_ITERATIONS = 10


@renamed_fields(
    max_iterations="max_steps",
    tolerance="atol",
    cg_max_iterations="cg_max_steps",
    cg_tolerance="cg_rtol",
)
@dataclasses.dataclass(frozen=True)
class GaussNewtonConfig:
    """Settings of the Gauss-Newton / Levenberg-Marquardt solver (frozen, validated).

    Attributes:
        method: ``"levenberg_marquardt"`` or ``"gauss_newton"`` (backtracked minimum-norm
            Gauss-Newton steps).
        damping: initial damping ``mu`` of the Nielsen rule, relative to the Marquardt
            scaling ``D = diag(J^T J)`` (> 0; unused by the trust-region rule, which starts
            from the Gauss-Newton step as MINPACK does).
        max_steps: budget of outer iterations (Jacobian evaluations after ``x0``);
            ``None`` (default): ``500 (n + 1)`` for ``n`` unknowns, resolved at call time
            (``max_iterations`` is its deprecated spelling).
        atol: converged when ``||J^T r|| <= atol`` (>= 0; an absolute test, so off by
            default: the relative tests below do not depend on the problem's scale;
            ``tolerance`` is its deprecated spelling).
        linear_solver: ``"dense"`` (materialised Jacobian, SVD) or ``"cg"`` (matrix-free).
        ftol: converged when the actual and predicted relative reductions of ``||r||^2`` by
            an accepted step are both at most ``ftol`` (MINPACK's ``ftol``; >= 0).
        xtol: converged when the scaled step (trust region: the trust radius) is at most
            ``xtol`` times the scaled ``x`` (MINPACK's ``xtol``; >= 0).
        gtol: converged when every column of ``J`` is within ``gtol`` of orthogonal to ``r``
            (MINPACK's ``gtol``; >= 0).

            ``None`` (the default for all three) follows the parameters' dtype, with ``eps``
            its machine epsilon (``2.2e-16`` in float64, ``1.2e-7`` in float32):
            ``xtol = gtol = eps`` and ``ftol = eps**2`` (a change of ``||r||^2`` resolves the
            parameters only to about ``sqrt(ftol)``), so that these tests pass only at
            rounding level; the iteration then stops at attainable precision (see the module
            docstring). See ``tolerances``.
        jacobian: ``"jacfwd"`` or ``"jacrev"`` for the dense Jacobian.
        max_inner_steps: rejected trial steps allowed in one iteration before ``STALLED``.
        cg_max_steps: CG iterations per linear solve (``None``: the number of unknowns;
            ``cg_max_iterations`` is its deprecated spelling).
        cg_rtol: relative residual tolerance of CG (``cg_tolerance`` is its deprecated
            spelling).
        damping_update: Levenberg-Marquardt's damping rule: ``"trust_region"`` (Moré /
            MINPACK; needs ``linear_solver="dense"``), ``"nielsen"``, or ``"auto"``
            (``"trust_region"`` when dense, ``"nielsen"`` for cg).
        initial_radius_factor: trust region: the first radius is this times
            ``||D^{1/2} x0||`` (MINPACK's ``factor``; > 0).

    Example:
        >>> GaussNewtonConfig().method, GaussNewtonConfig(damping_update="nielsen").damping
        ('levenberg_marquardt', 0.001)
    """

    method: str = "levenberg_marquardt"
    damping: float = 1e-3
    max_steps: int | None = None
    atol: float = 0.0
    linear_solver: str = "dense"
    ftol: float | None = None
    xtol: float | None = None
    gtol: float | None = None
    jacobian: str = "jacfwd"
    max_inner_steps: int = 40
    cg_max_steps: int | None = None
    cg_rtol: float = 1e-10
    damping_update: str = "auto"
    initial_radius_factor: float = 100.0

    def __post_init__(self) -> None:
        check_choice(self.method, METHODS, "method")
        check_positive(self.damping, "damping")
        if self.max_steps is not None:
            check_int_at_least(self.max_steps, 0, "max_steps")
        check_positive(self.atol, "atol", allow_zero=True)
        check_choice(self.linear_solver, LINEAR_SOLVERS, "linear_solver")
        for name in ("ftol", "xtol", "gtol"):
            if getattr(self, name) is not None:
                check_positive(getattr(self, name), name, allow_zero=True)
        check_choice(self.jacobian, JACOBIANS, "jacobian")
        check_int_at_least(self.max_inner_steps, 1, "max_inner_steps")
        if self.cg_max_steps is not None:
            check_int_at_least(self.cg_max_steps, 1, "cg_max_steps")
        check_positive(self.cg_rtol, "cg_rtol")
        check_choice(self.damping_update, DAMPING_UPDATES, "damping_update")
        check_positive(self.initial_radius_factor, "initial_radius_factor")
        if (
            self.method == "levenberg_marquardt"
            and self.damping_update == "trust_region"
            and self.linear_solver != "dense"
        ):
            raise ValueError(
                'damping_update="trust_region" needs linear_solver="dense", got'
                f" linear_solver={self.linear_solver!r}"
            )

    def tolerances(self, dtype: Any) -> tuple[float, float, float]:
        """``(ftol, xtol, gtol)`` for parameters of ``dtype`` (``None``: ``eps**2, eps, eps``).

        Example:
            >>> import jax.numpy as jnp
            >>> GaussNewtonConfig(xtol=1e-8).tolerances(jnp.float32)
            (1.4210854715202004e-14, 1e-08, 1.1920928955078125e-07)
        """
        eps = float(jnp.finfo(dtype).eps)
        defaults = (eps * eps, eps, eps)
        given = (self.ftol, self.xtol, self.gtol)
        return tuple(d if v is None else v for v, d in zip(given, defaults, strict=True))

    def budget(self, num_params: int) -> int:
        """``max_steps``, or ``500 (num_params + 1)`` when it is ``None``.

        Example:
            >>> GaussNewtonConfig().budget(3), GaussNewtonConfig(max_steps=10).budget(3)
            (2000, 10)
        """
        if self.max_steps is not None:
            return self.max_steps
        return _ITERATIONS_PER_UNKNOWN * (num_params + 1)


class GaussNewtonState(NamedTuple):
    """State of ``GaussNewtonSolver``: arrays only (flat vectors for the linear algebra).

    Attributes:
        params: current iterate (the caller's pytree).
        value: ``0.5 ||r||^2``.
        grad_norm: ``||J^T r||``.
        num_steps: outer iterations taken.
        num_fun_evals: residual evaluations (the one at ``x0`` included).
        num_jac_evals: Jacobian evaluations (dense) or linearisations (cg).
        residual: raveled residual ``r`` at ``params``, shape ``(m,)``.
        jacobian: dense ``J`` at ``params``, shape ``(m, n)`` (``(0,)`` on the cg path).
        gradient: raveled ``J^T r``, shape ``(n,)``.
        scale: Marquardt scaling ``D``: ``(n,)`` (dense) or ``(1,)`` (cg, a scalar).
        damping: ``mu`` (Levenberg-Marquardt) or the last accepted step length (Gauss-Newton).
        nu: Nielsen's rejection factor.
        radius: trust-region radius ``delta`` (``damping_update="trust_region"``).
        good_model: Nielsen path: the last accepted ratio was at least 0.75.
        status: ``SolveStatus`` code, meaningful once ``done``.
        done: whether a convergence or stall test has stopped the iteration.
        flat: the last accepted step changed ``||r||^2`` by no more than rounding can
            resolve (on the cg path: and did not reduce ``||J^T r||``).
        gauss_newton_change: ``||J dx||`` of the Gauss-Newton step at the previous iterate
            (dense path; ``inf`` before the first step and on the cg path). After a ``flat``
            step that did not make it smaller (cg path: after any ``flat`` step), the
            iteration stops: ``SUCCESS`` at attainable precision, ``STALLED`` elsewhere.
    """

    params: Any
    value: jax.Array
    grad_norm: jax.Array
    num_steps: jax.Array
    num_fun_evals: jax.Array
    num_jac_evals: jax.Array
    residual: jax.Array
    jacobian: jax.Array
    gradient: jax.Array
    scale: jax.Array
    damping: jax.Array
    nu: jax.Array
    radius: jax.Array
    good_model: jax.Array
    status: jax.Array
    done: jax.Array
    flat: jax.Array
    gauss_newton_change: jax.Array


class _Inner(NamedTuple):
    """Carry of the trial-step loop inside one outer iteration."""

    damping: jax.Array
    nu: jax.Array
    radius: jax.Array
    good_model: jax.Array
    tried_gn: jax.Array
    trials: jax.Array
    accepted: jax.Array
    flat: jax.Array
    done: jax.Array
    status: jax.Array
    x: jax.Array
    r: jax.Array
    jac: jax.Array
    jac_evals: jax.Array


class _Step(NamedTuple):
    """A candidate step: ``dx``, its scaled norm, and the linear model's ingredients."""

    dx: jax.Array
    pnorm: jax.Array  # ||D^{1/2} dx||
    jdx_sq: jax.Array  # ||J dx||^2
    slope: jax.Array  # (J^T r) . dx


def _flat_residual(residual_fn: Callable, unravel: Callable, args: tuple) -> Callable:
    def fn(x: jax.Array) -> jax.Array:
        return ravel_pytree(residual_fn(unravel(x), *args))[0]

    return fn


def _safe_div(a: jax.Array, b: jax.Array) -> jax.Array:
    nonzero = b != 0
    return jnp.where(nonzero, a / jnp.where(nonzero, b, 1.0), 0.0)


def _gtol_measure(gradient: jax.Array, col_norms: jax.Array, r_norm: jax.Array) -> jax.Array:
    """MINPACK's ``gnorm``: the largest |cosine| between ``r`` and a non-zero column of J."""
    cosines = jnp.where(col_norms > 0, _safe_div(jnp.abs(gradient), col_norms), 0.0)
    return _safe_div(jnp.max(cosines), r_norm)


class _DenseModel:
    """The SVD of the column-scaled Jacobian ``J D^{-1/2} = U S V^T`` and the steps it gives.

    In the scaled variables ``y = D^{1/2} dx`` a step is ``y = -V c`` with coefficients
    ``c = s / (s^2 + mu) * U^T r``; ``||y|| = ||c||`` and ``||J dx|| = ||s * c||``.
    """

    def __init__(self, jacobian: jax.Array, scale: jax.Array, r: jax.Array):
        eps = jnp.finfo(r.dtype).eps
        self.sqrt_d = jnp.sqrt(scale)
        u, self.s, self.vt = jnp.linalg.svd(jacobian / self.sqrt_d, full_matrices=False)
        self.gt = u.T @ r
        cutoff = eps * max(jacobian.shape) * jnp.max(self.s, initial=0.0)
        self.has = self.s > cutoff
        self.s_safe = jnp.where(self.has, self.s, 1.0)
        self.full_rank = jnp.all(self.has) & (self.s.shape[0] == jacobian.shape[1])
        self.c_gn = jnp.where(self.has, self.gt / self.s_safe, 0.0)  # minimum-norm GN step

    def coefficients(self, mu: jax.Array) -> jax.Array:
        return self.s * self.gt / (self.s * self.s + mu)

    def step(self, c: jax.Array) -> _Step:
        sc = self.s * c
        return _Step(
            dx=-(self.vt.T @ c) / self.sqrt_d,
            pnorm=jnp.linalg.norm(c),
            jdx_sq=sc @ sc,
            slope=-(sc @ self.gt),
        )

    def lmpar(self, delta: jax.Array, par0: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Moré's ``lmpar``: the damping whose step has ``||y||`` within 10 % of ``delta``.

        Returns ``(par, c)``; ``par = 0`` with the Gauss-Newton step when that fits.
        """
        tiny = jnp.finfo(self.s.dtype).tiny
        s2 = self.s * self.s
        dxnorm = jnp.linalg.norm(self.c_gn)
        fp0 = dxnorm - delta
        fits = fp0 <= 0.1 * delta
        # lower bound from the Newton step at par = 0 (only for a full-rank J)
        newton = _safe_div(
            jnp.sum(jnp.where(self.has, self.c_gn**2 / self.s_safe**2, 0.0)), dxnorm**2
        )
        parl = jnp.where(self.full_rank, _safe_div(_safe_div(fp0, delta), newton), 0.0)
        gnorm = jnp.linalg.norm(self.s * self.gt)  # ||(J D^-1/2)^T r||
        paru = gnorm / delta
        paru = jnp.where(paru == 0, tiny / jnp.minimum(delta, 0.1), paru)
        par = jnp.minimum(jnp.maximum(par0, parl), paru)
        par = jnp.where(par == 0, _safe_div(gnorm, dxnorm), par)

        def body(carry: tuple) -> tuple:
            i, par, parl, paru, fp, _ = carry
            par = jnp.where(par == 0, jnp.maximum(tiny, 0.001 * paru), par)
            c = self.coefficients(par)
            norm = jnp.linalg.norm(c)
            previous, fp = fp, norm - delta
            stop = (
                (jnp.abs(fp) <= 0.1 * delta)
                | ((parl == 0) & (fp <= previous) & (previous < 0))
                | (i + 1 >= _LMPAR_ITERATIONS)
            )
            parc = _safe_div(fp / delta, _safe_div(jnp.sum(c * c / (s2 + par)), norm**2))
            new_parl = jnp.where(fp > 0, jnp.maximum(parl, par), parl)
            new_paru = jnp.where(fp < 0, jnp.minimum(paru, par), paru)
            new_par = jnp.maximum(new_parl, par + parc)
            return (
                i + 1,
                jnp.where(stop, par, new_par),
                jnp.where(stop, parl, new_parl),
                jnp.where(stop, paru, new_paru),
                fp,
                stop,
            )

        _, par, _, _, _, _ = lax.while_loop(
            lambda carry: ~carry[-1], body, (0, par, parl, paru, fp0, fits)
        )
        par = jnp.where(fits, 0.0, par)
        c = jnp.where(fits, self.c_gn, self.coefficients(jnp.where(fits, 1.0, par)))
        return par, c


class GaussNewtonSolver:
    """Gauss-Newton / Levenberg-Marquardt as an ``init / step / terminate`` solver.

    Build it with ``create_gauss_newton_solver``. ``run(residual_fn, x0, *args)`` always
    works; ``init`` / ``step`` / ``terminate`` (for ``opifex.core.run_solver``) need a bound
    residual function (``create_gauss_newton_solver(config, residual_fn)`` or ``bind``).

    Example:
        >>> import jax.numpy as jnp
        >>> solver = create_gauss_newton_solver(GaussNewtonConfig())
        >>> residual = lambda x: jnp.stack([10 * (x[1] - x[0] ** 2), 1 - x[0]])
        >>> result = solver.run(residual, jnp.array([-1.2, 1.0]))
        >>> bool(result.converged), [round(float(v), 6) for v in result.params]
        (True, [1.0, 1.0])
    """

    def __init__(self, config: GaussNewtonConfig, residual_fn: Callable | None = None):
        if not isinstance(config, GaussNewtonConfig):
            raise TypeError(f"config must be a GaussNewtonConfig, got {type(config).__name__}")
        if residual_fn is not None:
            check_callable(residual_fn, "residual_fn")
        self.config = config
        self.residual_fn = residual_fn

    # ------------------------------------------------------------------ binding

    def bind(self, residual_fn: Callable) -> GaussNewtonSolver:
        """A solver with the same config whose ``init / step / terminate`` use ``residual_fn``."""
        return GaussNewtonSolver(self.config, residual_fn)

    def _residual_fn(self) -> Callable:
        if self.residual_fn is None:
            raise TypeError(
                "this GaussNewtonSolver has no residual function: use"
                " create_gauss_newton_solver(config, residual_fn) or solver.bind(residual_fn)"
            )
        return self.residual_fn

    @property
    def _dense(self) -> bool:
        return self.config.linear_solver == "dense"

    @property
    def _rule(self) -> str:
        """``"gauss_newton"``, ``"nielsen"`` or ``"trust_region"``."""
        if self.config.method == "gauss_newton":
            return "gauss_newton"
        if self.config.damping_update == "auto":
            return "trust_region" if self._dense else "nielsen"
        return self.config.damping_update

    def _jacobian(self, fn: Callable, x: jax.Array) -> jax.Array:
        jac = jax.jacfwd(fn) if self.config.jacobian == "jacfwd" else jax.jacrev(fn)
        return jnp.reshape(jac(x), (-1, x.shape[0]))

    def _cg(self, matvec: Callable, b: jax.Array) -> jax.Array:
        maxiter = self.config.cg_max_steps or b.shape[0]
        return jax.scipy.sparse.linalg.cg(matvec, b, tol=self.config.cg_rtol, maxiter=maxiter)[0]

    @staticmethod
    def _rayleigh(jvp: Callable, gradient: jax.Array, scale: jax.Array) -> jax.Array:
        """Running max of ``||J g||^2 / ||g||^2`` (the cg path's scalar Marquardt scaling)."""
        jg = jvp(gradient)
        new = jnp.maximum(scale, _safe_div(jg @ jg, gradient @ gradient))
        return jnp.where(new > 0, new, 1.0)

    # ------------------------------------------------------------------ protocol

    def init(self, params: Any, *args: Any) -> GaussNewtonState:
        """Evaluate the residual and Jacobian at ``params``; MINPACK's ``gtol`` test at x0."""
        x, unravel = ravel_pytree(params)
        fn = _flat_residual(self._residual_fn(), unravel, args)
        dtype = x.dtype
        if self._dense:
            r = fn(x)
            jac = self._jacobian(fn, x)
            gradient = jac.T @ r
            col_sq = jnp.sum(jac * jac, axis=0)
            scale = jnp.where(col_sq > 0, col_sq, 1.0)
            gnorm = _gtol_measure(gradient, jnp.sqrt(col_sq), jnp.linalg.norm(r))
        else:
            r, jvp = jax.linearize(fn, x)
            gradient = jax.linear_transpose(jvp, x)(r)[0]
            jac = jnp.zeros((0,), dtype)
            scale = self._rayleigh(jvp, gradient, jnp.zeros((1,), dtype))
            gnorm = _gtol_measure(gradient, jnp.sqrt(scale), jnp.linalg.norm(r))
        x_norm = jnp.linalg.norm(jnp.sqrt(scale) * x)
        factor = self.config.initial_radius_factor
        rule = self._rule
        damping = {"gauss_newton": 1.0, "nielsen": self.config.damping, "trust_region": 0.0}
        return GaussNewtonState(
            params=params,
            value=0.5 * (r @ r),
            grad_norm=jnp.linalg.norm(gradient),
            num_steps=jnp.zeros((), jnp.int32),
            num_fun_evals=jnp.ones((), jnp.int32),
            num_jac_evals=jnp.ones((), jnp.int32),
            residual=r,
            jacobian=jac,
            gradient=gradient,
            scale=scale,
            damping=jnp.asarray(damping[rule], dtype),
            nu=jnp.asarray(2.0, dtype),
            radius=jnp.where(x_norm > 0, factor * x_norm, factor).astype(dtype),
            good_model=jnp.zeros((), bool),
            status=jnp.asarray(SolveStatus.SUCCESS, jnp.int32),
            done=gnorm <= self.config.tolerances(dtype)[2],
            flat=jnp.zeros((), bool),
            gauss_newton_change=jnp.asarray(jnp.inf, dtype),
        )

    def step(self, state: GaussNewtonState, *args: Any) -> GaussNewtonState:
        """One outer iteration: trial steps until one is accepted, then the new Jacobian."""
        cfg = self.config
        rule = self._rule
        x, unravel = ravel_pytree(state.params)
        fn = _flat_residual(self._residual_fn(), unravel, args)
        dtype = x.dtype
        eps = jnp.finfo(dtype).eps
        ftol, xtol, gtol = cfg.tolerances(dtype)
        r = state.residual
        rr = r @ r
        r_norm = jnp.sqrt(rr)
        first_iteration = state.num_steps == 0
        extra_jac_evals = 0

        # ---- the linear model of this iteration: damped steps and the Gauss-Newton step
        if self._dense:
            model = _DenseModel(state.jacobian, state.scale, r)
            sqrt_d = model.sqrt_d
            scale = state.scale

            def damped(mu: jax.Array) -> _Step:
                return model.step(model.coefficients(mu))

            gauss_newton = model.step(model.c_gn)
        else:
            _, jvp = jax.linearize(fn, x)
            vjp = jax.linear_transpose(jvp, x)
            extra_jac_evals = 1
            g = state.gradient
            scale = self._rayleigh(jvp, g, state.scale)
            sqrt_d = jnp.full_like(x, jnp.sqrt(scale[0]))

            def normal_matvec(v: jax.Array) -> jax.Array:
                return vjp(jvp(v))[0]

            def solved(dx: jax.Array) -> _Step:
                jdx = jvp(dx)
                return _Step(dx, jnp.linalg.norm(sqrt_d * dx), jdx @ jdx, g @ dx)

            def damped(mu: jax.Array) -> _Step:
                return solved(self._cg(lambda v: normal_matvec(v) + mu * scale[0] * v, -g))

            gauss_newton = solved(self._cg(normal_matvec, -g)) if rule == "gauss_newton" else None

        # ---- rounding: the error of r at x, the change of ||r||^2 it can account for, and
        # whether x is already at attainable precision (the Gauss-Newton correction would
        # change r by no more than ten times that error)
        if self._dense:
            col_sq = jnp.sum(state.jacobian * state.jacobian, axis=0)
            model_size = jnp.sqrt(col_sq @ (x * x))  # ||J diag(x)||_F
            gn_change = jnp.sqrt(gauss_newton.jdx_sq)
            cosine = _gtol_measure(state.gradient, jnp.sqrt(col_sq), r_norm)
        else:
            model_size = jnp.sqrt(scale[0]) * jnp.linalg.norm(x)
            gn_change = jnp.asarray(jnp.inf, dtype)
            cosine = _safe_div(state.grad_norm, jnp.sqrt(scale[0]) * r_norm)
        rounding_error = eps * (model_size + r_norm)
        # the Gauss-Newton correction, and the part of r along any one column of J (which also
        # sees directions the SVD truncates), within a small multiple of that error
        attained = (gn_change <= _ATTAINABLE * rounding_error) & (
            cosine * r_norm <= _ATTAINABLE * rounding_error
        )
        no_progress_at_rounding = state.flat & (gn_change >= state.gauss_newton_change)
        # relative change of ||r||^2 that the rounding error of r accounts for
        resolution = _safe_div((2.0 * r_norm + rounding_error) * rounding_error, rr)
        # stationary as far as comparing values of ||r||^2 (a step along the gradient would
        # change it by about cosine^2, relative, below its resolution) or steps of relative
        # size xtol can tell
        precision = jnp.minimum(jnp.sqrt(resolution), eps**0.25)
        precision += _safe_div(xtol * (model_size + r_norm), r_norm)
        # ... and the Gauss-Newton model is not blind to it: a column explains no more of r
        # than the correction does (more only where the SVD's rank cutoff drops a direction)
        seen = cosine * r_norm <= 2.0 * gn_change + _ATTAINABLE * rounding_error
        stationary = (cosine <= _STATIONARY * precision) & seen

        def confirm(candidate: jax.Array, x_try: jax.Array) -> tuple[jax.Array, jax.Array]:
            """The Jacobian at an acceptable ``x_try``, and whether the step is a leap.

            A leap carries a parameter to where the residual no longer depends on it (a
            column of ``J`` falls below ``eps`` times its norm at ``x``, e.g. ``exp(-b t)``
            underflowing), from where no local method returns: it is rejected.
            """
            if not self._dense:
                return state.jacobian, jnp.zeros((), bool)
            jac_try = lax.cond(
                candidate, lambda z: self._jacobian(fn, z), lambda z: state.jacobian, x_try
            )
            col_try = jnp.sum(jac_try * jac_try, axis=0)
            collapsed = jnp.any((col_try < eps * eps * col_sq) & (col_sq > 0))
            return jac_try, candidate & collapsed

        # ---- one trial: evaluate, compare actual and predicted reduction, MINPACK's tests
        def evaluate(step: _Step, prered: jax.Array, threshold: jax.Array) -> tuple:
            """Residual (and, if acceptable, Jacobian) at ``x + dx``, and the reduction.

            Returns the actual relative reduction of ``||r||^2`` and its ratio to ``prered``
            (both ``-1`` for a leap, see ``confirm``). When the predicted and the actual
            change of ``||r||^2`` are both within what the rounding error of ``r`` accounts
            for, the model cannot be checked: the step is then taken as exact (ratio 1), so
            the iteration can still reach attainable precision on small-residual problems
            whose ``||r||^2`` is noisy.
            """
            x_try = x + step.dx
            r_try = fn(x_try)
            rr_try = r_try @ r_try
            finite = jnp.isfinite(rr_try) & jnp.all(jnp.isfinite(x_try))
            shrank = finite & (0.1 * jnp.sqrt(jnp.where(finite, rr_try, 0.0)) < r_norm)
            actred = jnp.where(shrank, 1.0 - _safe_div(rr_try, rr), -1.0)
            flat = finite & (prered <= resolution) & (jnp.abs(actred) <= resolution)
            ratio = jnp.where(flat, 1.0, _safe_div(actred, prered))
            candidate = finite & (ratio >= threshold)
            jac_try, leap = confirm(candidate, x_try)
            return (
                x_try,
                r_try,
                jac_try,
                candidate.astype(jnp.int32) if self._dense else 0,
                finite,
                shrank & ~leap,
                jnp.where(leap, -1.0, actred),
                jnp.where(leap, -1.0, ratio),
                flat & ~leap,
            )

        def model_reduction(step: _Step, par: jax.Array) -> jax.Array:
            """MINPACK's ``prered``: ``(||J dx||^2 + 2 par ||D^1/2 dx||^2) / ||r||^2``."""
            return _safe_div(step.jdx_sq + 2.0 * par * step.pnorm**2, rr)

        def tests(
            actred: jax.Array,
            prered: jax.Array,
            ratio: jax.Array,
            size: jax.Array,
            x_norm: jax.Array,
            accept: jax.Array,
        ) -> tuple[jax.Array, jax.Array]:
            """MINPACK's convergence tests, and its "no further progress possible" tests.

            Unlike MINPACK, the ``ftol`` test needs an accepted step: a rejected step whose
            predicted reduction is small only because the damping has grown says nothing
            about convergence (the radius keeps shrinking until the step is at rounding
            level, accepted as such, or the ``xtol`` test passes). And the ``xtol`` test
            needs ``x`` to be stationary to the same precision: steps also become small
            where no step can decrease ``||r||`` (a kink, a wrong Jacobian), which is not
            convergence.
            """
            ftol_ok = accept & (jnp.abs(actred) <= ftol) & (prered <= ftol) & (ratio <= 2.0)
            xtol_ok = (size <= xtol * x_norm) & stationary
            rounding = ((jnp.abs(actred) <= resolution) & (prered <= resolution)) | (
                size <= eps * x_norm
            )
            return ftol_ok | xtol_ok, rounding

        def finish(carry: _Inner, trial: tuple, accept: jax.Array, **updates: jax.Array) -> _Inner:
            """The carry after a trial: ``updates`` are the damping rule's new values."""
            x_try, r_try, jac_try, jac_evals, flat, converged, stalled = trial
            status = jnp.where(converged, SolveStatus.SUCCESS, SolveStatus.STALLED)
            return carry._replace(
                trials=carry.trials + 1,
                accepted=accept,
                flat=accept & flat,
                done=converged | stalled,
                status=status.astype(jnp.int32),
                x=jnp.where(accept, x_try, carry.x),
                r=jnp.where(accept, r_try, carry.r),
                jac=jnp.where(accept, jac_try, carry.jac),
                jac_evals=carry.jac_evals + jac_evals,
                **updates,
            )

        def no_progress(carry: _Inner, accept: jax.Array, rounding: jax.Array) -> jax.Array:
            """A rejected trial at rounding level, or the last trial allowed, rejected."""
            return ~accept & (rounding | (carry.trials + 1 >= cfg.max_inner_steps))

        def gauss_newton_trial(carry: _Inner) -> _Inner:
            alpha = carry.damping
            step = _Step(
                alpha * gauss_newton.dx,
                alpha * gauss_newton.pnorm,
                alpha**2 * gauss_newton.jdx_sq,
                alpha * gauss_newton.slope,
            )
            prered = _safe_div(-2.0 * step.slope - step.jdx_sq, rr)  # linear-model reduction
            x_try, r_try, jac_try, jac_evals, finite, _, actred, ratio, flat = evaluate(
                step, prered, _ACCEPT_RATIO
            )
            accept = finite & (ratio >= _ACCEPT_RATIO)
            x_norm = jnp.linalg.norm(sqrt_d * jnp.where(accept, x_try, x))
            converged, rounding = tests(actred, prered, ratio, step.pnorm, x_norm, accept)
            stalled = ~converged & no_progress(carry, accept, rounding)
            return finish(
                carry,
                (x_try, r_try, jac_try, jac_evals, flat, converged, stalled),
                accept,
                damping=jnp.where(accept, alpha, 0.5 * alpha),
            )

        def nielsen_trial(carry: _Inner) -> _Inner:
            mu, nu = carry.damping, carry.nu
            step = damped(mu)
            use_gn = jnp.zeros((), bool)
            if self._dense:  # the undamped Gauss-Newton trial after a very good iteration
                use_gn = carry.good_model & ~carry.tried_gn
                step = tree_where(use_gn, gauss_newton, step)
            par = jnp.where(use_gn, 0.0, mu)
            prered = model_reduction(step, par)
            threshold = jnp.where(use_gn, _GN_TRIAL_RATIO, _ACCEPT_RATIO)
            x_try, r_try, jac_try, jac_evals, finite, _, actred, ratio, flat = evaluate(
                step, prered, threshold
            )
            accept = finite & (ratio >= threshold)
            gn_missed = use_gn & ~accept  # not a rejection: fall back to the damped step
            factor = jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * ratio - 1.0) ** 3)
            new_mu = jnp.where(accept, mu * factor, jnp.where(gn_missed, mu, mu * nu))
            new_nu = jnp.where(accept, 2.0, jnp.where(gn_missed, nu, 2.0 * nu))
            x_norm = jnp.linalg.norm(sqrt_d * jnp.where(accept, x_try, x))
            converged, rounding = tests(actred, prered, ratio, step.pnorm, x_norm, accept)
            converged = converged & ~gn_missed
            stalled = (
                ~converged
                & ~gn_missed
                & (no_progress(carry, accept, rounding) | ~jnp.isfinite(new_mu) | (new_mu <= 0))
            )
            return finish(
                carry,
                (x_try, r_try, jac_try, jac_evals, flat, converged, stalled),
                accept,
                damping=new_mu,
                nu=new_nu,
                tried_gn=carry.tried_gn | use_gn,
                good_model=jnp.where(accept, ratio >= _GOOD_MODEL_RATIO, carry.good_model),
            )

        def trust_region_trial(carry: _Inner) -> _Inner:  # MINPACK lmder's inner loop
            par, c = model.lmpar(carry.radius, carry.damping)
            step = model.step(c)
            delta = jnp.where(first_iteration, jnp.minimum(carry.radius, step.pnorm), carry.radius)
            prered = model_reduction(step, par)
            x_try, r_try, jac_try, jac_evals, finite, shrank, actred, ratio, flat = evaluate(
                step, prered, _ACCEPT_RATIO
            )
            dirder = -_safe_div(step.jdx_sq + par * step.pnorm**2, rr)
            poor = ratio <= 0.25
            temp = jnp.where(actred >= 0, 0.5, _safe_div(0.5 * dirder, dirder + 0.5 * actred))
            temp = jnp.where(~shrank | (temp < 0.1), 0.1, temp)
            good = (par == 0) | (ratio >= 0.75)
            new_delta = jnp.where(
                poor,
                temp * jnp.minimum(delta, step.pnorm / 0.1),
                jnp.where(good, 2.0 * step.pnorm, delta),
            )
            new_par = jnp.where(poor, par / temp, jnp.where(good, 0.5 * par, par))
            accept = finite & (ratio >= _ACCEPT_RATIO)
            x_norm = jnp.linalg.norm(sqrt_d * jnp.where(accept, x_try, x))
            converged, rounding = tests(actred, prered, ratio, new_delta, x_norm, accept)
            stalled = ~converged & no_progress(carry, accept, rounding)
            return finish(
                carry,
                (x_try, r_try, jac_try, jac_evals, flat, converged, stalled),
                accept,
                damping=new_par,
                radius=new_delta,
            )

        trial = {
            "gauss_newton": gauss_newton_trial,
            "nielsen": nielsen_trial,
            "trust_region": trust_region_trial,
        }[rule]
        # x at attainable precision: done (SUCCESS) before any trial; after a step at
        # rounding level that made no progress: SUCCESS if stationary to rounding, else STALLED
        stop = attained | no_progress_at_rounding
        carry = _Inner(
            damping=jnp.ones((), dtype) if rule == "gauss_newton" else state.damping,
            nu=state.nu,
            radius=state.radius,
            good_model=state.good_model,
            tried_gn=jnp.zeros((), bool),
            trials=jnp.zeros((), jnp.int32),
            accepted=jnp.zeros((), bool),
            flat=jnp.zeros((), bool),
            done=stop,
            status=jnp.asarray(SolveStatus.STALLED, jnp.int32),
            x=x,
            r=r,
            jac=state.jacobian,
            jac_evals=jnp.zeros((), jnp.int32),
        )
        out = lax.while_loop(lambda c: ~c.accepted & ~c.done, trial, carry)
        x_new, r_new = out.x, out.r

        # ---- the Jacobian at the new point (dense: computed by the accepted trial), the
        # running-max scaling and MINPACK's gtol test
        if self._dense:

            def refresh(_: None) -> tuple:
                gradient = out.jac.T @ r_new
                col_sq_new = jnp.sum(out.jac * out.jac, axis=0)
                gnorm = _gtol_measure(gradient, jnp.sqrt(col_sq_new), jnp.linalg.norm(r_new))
                return out.jac, gradient, jnp.maximum(scale, col_sq_new), gnorm

        else:

            def refresh(_: None) -> tuple:
                _, vjp_new = jax.vjp(fn, x_new)
                gradient = vjp_new(r_new)[0]
                gnorm = _gtol_measure(gradient, sqrt_d, jnp.linalg.norm(r_new))
                return state.jacobian, gradient, scale, gnorm

        def keep(_: None) -> tuple:
            return state.jacobian, state.gradient, scale, jnp.asarray(jnp.inf, dtype)

        jac, gradient, scale, gnorm = lax.cond(out.accepted, refresh, keep, None)
        gtol_ok = out.accepted & (gnorm <= gtol)
        grad_norm = jnp.linalg.norm(gradient)
        # a step taken at rounding level must make progress: reduce ||J^T r|| or (checked by
        # the next step) the Gauss-Newton correction
        flat = out.accepted & out.flat & ~gtol_ok & (grad_norm >= state.grad_norm)
        # no further progress is possible: at attainable precision if stationary to rounding
        stalled = out.done & (out.status == SolveStatus.STALLED)
        status = jnp.where(out.done, out.status, SolveStatus.SUCCESS)
        status = jnp.where(attained | (stalled & stationary), SolveStatus.SUCCESS, status)
        status = status.astype(jnp.int32)
        jac_evals = out.jac_evals + (0 if self._dense else out.accepted.astype(jnp.int32))
        return GaussNewtonState(
            params=unravel(x_new),
            value=0.5 * (r_new @ r_new),
            grad_norm=grad_norm,
            num_steps=state.num_steps + (~stop).astype(jnp.int32),
            num_fun_evals=state.num_fun_evals + out.trials,
            num_jac_evals=state.num_jac_evals + jac_evals + extra_jac_evals * (~stop),
            residual=r_new,
            jacobian=jac,
            gradient=gradient,
            scale=scale,
            damping=out.damping,
            nu=out.nu,
            radius=out.radius,
            good_model=out.good_model,
            status=status,
            done=out.done | gtol_ok,
            flat=flat,
            gauss_newton_change=gn_change,
        )

    def terminate(self, state: GaussNewtonState, *args: Any) -> tuple[jax.Array, jax.Array]:
        """Stop on a MINPACK test or stall recorded by ``step``, or ``||J^T r|| <= atol``."""
        small = state.grad_norm <= self.config.atol
        status = jnp.where(small, SolveStatus.SUCCESS, state.status)
        return state.done | small, status.astype(jnp.int32)

    def trace_fields(self, state: GaussNewtonState) -> dict[str, jax.Array]:
        """Per-step extra trace entries: the damping (or the Gauss-Newton step length)."""
        return {"damping": state.damping}

    # the solution solves J^T r = grad (0.5 ||r||^2) = 0, a symmetric Jacobian
    implicit_symmetric = True

    @property
    def implicit_linear_solver(self) -> str:
        """The linear solve of implicit derivatives: dense, or CG on the matrix-free path."""
        return self.config.linear_solver

    def value_fn(self, params: Any, *args: Any) -> jax.Array:
        """``0.5 ||r(params, *args)||^2``."""
        return _half_squared_norm(self._residual_fn()(params, *args))

    def optimality_fn(self, params: Any, *args: Any) -> Any:
        """``J^T r``, the gradient of ``0.5 ||r||^2``: zero at a solution."""
        return jax.grad(self.value_fn)(params, *args)

    # ------------------------------------------------------------------ driver

    def run(self, residual_fn: Callable, x0: Any, *args: Any) -> SolveResult:
        """Solve from ``x0`` (validated); the solution is differentiable w.r.t. ``args``."""
        return least_squares(residual_fn, x0, *args, config=self.config)


def create_gauss_newton_solver(
    config: GaussNewtonConfig | None = None, residual_fn: Callable | None = None
) -> GaussNewtonSolver:
    """A Gauss-Newton / Levenberg-Marquardt solver object for ``config``.

    Args:
        config: a ``GaussNewtonConfig`` (default ``GaussNewtonConfig()``).
        residual_fn: optional ``residual_fn(params, *args) -> residual pytree`` to bind, so that
            ``init / step / terminate`` can be driven by ``opifex.core.run_solver``.

    Returns:
        A ``GaussNewtonSolver``; ``solver.run(residual_fn, x0, *args)`` returns a
        ``SolveResult``.

    Example:
        >>> import jax.numpy as jnp
        >>> from opifex.core import run_solver
        >>> residual = lambda x, y: x - y
        >>> solver = create_gauss_newton_solver(GaussNewtonConfig(), residual)
        >>> result = run_solver(solver, jnp.zeros(3), jnp.ones(3), max_steps=10)
        >>> bool(result.converged), result.params.tolist()
        (True, [1.0, 1.0, 1.0])
    """
    config = GaussNewtonConfig() if config is None else config
    return GaussNewtonSolver(config, residual_fn)


def _half_squared_norm(residual: Any) -> jax.Array:
    leaves = jax.tree.leaves(residual)
    return 0.5 * sum(jnp.sum(leaf * leaf) for leaf in leaves)


def _gauss_newton_solver(residual_fn: Callable, config: GaussNewtonConfig) -> GaussNewtonSolver:
    return GaussNewtonSolver(config, residual_fn)


def least_squares(
    residual_fn: Callable,
    x0: Any,
    *args: Any,
    config: GaussNewtonConfig | None = None,
    trace_length: int | None = None,
    adjoint: str | None = None,
    implicit_diff: bool | None = None,
    **config_overrides: Any,
) -> SolveResult:
    """Minimise ``0.5 ||residual_fn(params, *args)||^2`` from ``x0``.

    The solution (and ``value``) is differentiable with respect to ``args`` by the implicit
    function theorem on ``J^T r = 0``, in forward and reverse mode; the iterations are never
    differentiated.

    Args:
        residual_fn: ``residual_fn(params, *args) -> residual pytree`` (float leaves).
        x0: initial parameters (finite; any pytree of float arrays).
        *args: problem data (arrays; traced, so new values do not recompile).
        config: a ``GaussNewtonConfig`` (default ``GaussNewtonConfig()``: Levenberg-Marquardt
            run to attainable precision in the parameters' dtype, at most ``500 (n + 1)``
            iterations for ``n`` unknowns).
        trace_length: the trace's length minus one (default: the budget). The budget is a
            traced value: with ``trace_length`` fixed, a new budget does not recompile.
        adjoint: ``None`` / ``"implicit"`` (the default, above) or ``"unrolled"`` (forward
            mode through the iterations; see ``opifex.core.run_solver``).
        implicit_diff: deprecated: ``True`` is the default adjoint, ``False`` is
            ``adjoint="unrolled"``.
        **config_overrides: ``GaussNewtonConfig`` fields overriding ``config``'s.

    Returns:
        A ``SolveResult`` with ``value = 0.5 ||r||^2``, ``grad_norm = ||J^T r||``,
        ``num_steps`` = outer iterations (one Jacobian each, as MINPACK's ``njev``) and
        ``stats`` ``num_fun_evals`` / ``num_jac_evals``; ``trace["damping"]``.

    Raises:
        ValueError: ``x0`` empty or not finite, an empty residual, an unknown option.
        TypeError: non-float ``x0`` leaves or residuals, a non-callable ``residual_fn``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> t = jnp.linspace(0.0, 1.0, 20)
        >>> residual = lambda p, y: p[0] * jnp.exp(p[1] * t) - y
        >>> y = 2.0 * jnp.exp(-1.5 * t)
        >>> result = least_squares(residual, jnp.array([1.0, 0.0]), y)
        >>> [round(float(v), 4) for v in result.params]
        [2.0, -1.5]
    """
    config = resolve_config(GaussNewtonConfig, config, config_overrides)
    if implicit_diff is not None:
        if not isinstance(implicit_diff, bool):
            raise TypeError(f"implicit_diff must be a bool, got {type(implicit_diff).__name__}")
        warnings.warn(
            "least_squares(implicit_diff=) is deprecated and will be removed in the next "
            "release; the implicit adjoint is the default, adjoint='unrolled' the other choice",
            DeprecationWarning,
            stacklevel=2,
        )
        adjoint = adjoint if implicit_diff else "unrolled"
    check_callable(residual_fn, "residual_fn")
    x0 = check_params(x0)
    check_residual(residual_fn, x0, args)
    return solve_with_budget(
        _gauss_newton_solver, residual_fn, config, x0, args, trace_length, adjoint
    )
