"""The parametric QP family of the serving benchmark, its opifex solver and its OSQP servable.

One fixed problem, a new linear term per request (float64, n = 10):

    minimise 1/2 x' diag(w) x + q' x   s.t.   A x = b (2 rows),   -1 <= x <= 1

``w`` in [1, 10], ``A`` standard normal and ``b = A x0`` for an interior ``x0`` are drawn once
from a fixed seed; the parameter ``q`` (standard normal times 4, so that several bounds are
active) comes with each request.

* opifex: ``opifex.control.filter_qp`` (the closest point to ``-q / w`` in the weighted norm,
  i.e. the same QP, by Goldfarb-Idnani's dual active-set method, exact after finitely many
  steps; feasibility and KKT tolerance ``rtol = 1e-10``), each equality as two opposite
  half-spaces, exported per example with
  ``opifex.deploy.export_function`` (vmapped over the batch).
* OSQP: ``osqp.OSQP`` set up once per worker thread (the KKT factorisation reused), then
  ``update(q=...)`` and ``solve()`` per request; ``eps_abs = eps_rel = 1e-9``, polishing on,
  warm starting off (so an answer does not depend on the request before it).

Only numpy is needed to build the data; ``filter_qp`` and ``osqp`` are imported where used, so
the server process imports neither unless it serves them.
"""

import dataclasses
import hashlib
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

N, N_EQ = 10, 2
SEED = 7
Q_SCALE = 4.0
RTOL = 1e-10  # filter_qp's feasibility / KKT tolerance (its default, sqrt(eps), leaves ~1e-7)
NAME = "qp-box-eq"
OSQP_NAME = "qp-osqp"
OSQP_SETTINGS = {
    "eps_abs": 1e-9,
    "eps_rel": 1e-9,
    "polishing": True,
    "warm_starting": False,
    "max_iter": 20000,
    "verbose": False,
}


@dataclasses.dataclass(frozen=True)
class QPFamily:
    """The fixed data of the QP; ``q`` varies per request."""

    weight: np.ndarray  # (n,) the diagonal of P
    eq_matrix: np.ndarray  # (n_eq, n)
    eq_rhs: np.ndarray  # (n_eq,)
    lower: np.ndarray  # (n,)
    upper: np.ndarray  # (n,)

    def objective(self, x: np.ndarray, q: np.ndarray) -> np.ndarray:
        """``1/2 x' diag(w) x + q' x`` along the last axis."""
        return 0.5 * np.sum(self.weight * x * x, axis=-1) + np.sum(q * x, axis=-1)

    def violation(self, x: np.ndarray) -> np.ndarray:
        """The largest violation of an equality or a bound, along the last axis."""
        eq = np.abs(x @ self.eq_matrix.T - self.eq_rhs).max(axis=-1)
        box = np.maximum(np.maximum(self.lower - x, x - self.upper), 0.0).max(axis=-1)
        return np.maximum(eq, box)

    def digest(self) -> str:
        """SHA-256 of the data (the OSQP servable's content hash)."""
        h = hashlib.sha256()
        for array in dataclasses.astuple(self):
            h.update(np.ascontiguousarray(array, np.float64).tobytes())
        return h.hexdigest()


def make_family(seed: int = SEED) -> QPFamily:
    """The benchmark's QP data, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    weight = rng.uniform(1.0, 10.0, N)
    eq_matrix = rng.standard_normal((N_EQ, N))
    interior = rng.uniform(-0.5, 0.5, N)
    return QPFamily(weight, eq_matrix, eq_matrix @ interior, -np.ones(N), np.ones(N))


def sample_q(seed: int, count: int) -> np.ndarray:
    """``count`` linear terms, ``(count, n)``."""
    return Q_SCALE * np.random.default_rng(seed).standard_normal((count, N))


def signature() -> Any:
    """The served signature: ``q`` in; ``x``, ``objective`` and ``converged`` out."""
    from opifex.deploy import Signature, TensorSpec

    return Signature(
        inputs=(TensorSpec("q", (N,), "float64"),),
        outputs=(
            TensorSpec("x", (N,), "float64"),
            TensorSpec("objective", (), "float64"),
            TensorSpec("converged", (), "bool"),
        ),
    )


def opifex_solver(family: QPFamily) -> Any:
    """The per-example function ``q -> {"x", "objective", "converged"}`` by ``filter_qp``."""
    import jax.numpy as jnp

    from opifex.control import filter_qp

    # numpy constants, made JAX arrays while tracing: export_function traces with float64 on,
    # and a jnp.asarray here (float64 off) would round them to float32
    weight = family.weight
    normals = np.concatenate([family.eq_matrix, -family.eq_matrix])
    offsets = np.concatenate([family.eq_rhs, -family.eq_rhs])
    lower, upper = family.lower, family.upper

    def qp_box_eq(q: Any) -> dict[str, Any]:
        solution = filter_qp(-q / weight, normals, offsets, lower, upper, weight, rtol=RTOL)
        x = solution.control
        return {
            "x": x,
            "objective": 0.5 * jnp.sum(weight * x * x) + jnp.dot(q, x),
            "converged": solution.converged & solution.feasible,
        }

    return qp_box_eq


class OSQPServable:
    """A servable that solves each example of a batch with OSQP (one instance per thread).

    The service may call it from several threads at once (``batching=False`` runs requests
    concurrently), and an OSQP instance is not thread-safe, so each thread sets up its own.
    """

    def __init__(self, family: QPFamily) -> None:
        self.family = family
        self.signature = signature()
        self.sha256 = hashlib.sha256(b"osqp:" + family.digest().encode()).hexdigest()
        self._local = threading.local()

    def _solver(self) -> Any:
        solver = getattr(self._local, "solver", None)
        if solver is None:
            import osqp
            from scipy import sparse

            f = self.family
            constraints = sparse.vstack([sparse.csc_matrix(f.eq_matrix), sparse.eye(N)]).tocsc()
            solver = osqp.OSQP()
            solver.setup(
                sparse.diags(f.weight).tocsc(),
                np.zeros(N),
                constraints,
                np.concatenate([f.eq_rhs, f.lower]),
                np.concatenate([f.eq_rhs, f.upper]),
                **OSQP_SETTINGS,
            )
            self._local.solver = solver
        return solver

    def solve_one(self, q: np.ndarray) -> tuple[np.ndarray, bool]:
        """``(x, solved)`` for one linear term."""
        import osqp

        solver = self._solver()
        solver.update(q=np.asarray(q, np.float64))
        result = solver.solve(raise_error=False)
        solved = result.info.status_val == osqp.SolverStatus.OSQP_SOLVED
        return np.asarray(result.x, np.float64), bool(solved)

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Solve every example of the batch, one OSQP solve each."""
        qs = np.asarray(inputs["q"], np.float64)
        xs, ok = zip(*(self.solve_one(q) for q in qs), strict=True)
        x = np.stack(xs)
        return {
            "x": x,
            "objective": self.family.objective(x, qs),
            "converged": np.asarray(ok, bool),
        }
