"""The functional core behind ``opifex.l2o.L2OEngine``.

* ``guarded_solve``: a learned optimiser run on the core driver with divergence, stall and
  convergence detection under ``jit``, and the Adam / L-BFGS fallback; ``stall_window``;
* ``solve_with`` / ``recommend_algorithm``: one of ``ALGORITHMS`` on a task of a problem, and
  the rule that picks it; ``Recommendation``;
* ``WarmStartStore`` / ``WarmStart``: solved problems kept by descriptor;
* ``PROBLEM_TYPES``: the ``OptimizationProblem`` types; ``ENGINE_TRACE``: the trace keys of
  every engine result.
"""

from opifex.core.metatrain import WarmStart, WarmStartStore
from opifex.l2o._engine_result import ENGINE_TRACE
from opifex.l2o._fallback import guarded_solve, stall_window
from opifex.l2o._problem import PROBLEM_TYPES
from opifex.l2o._recommend import ALGORITHMS, Recommendation, recommend_algorithm, solve_with

__all__ = [
    "ALGORITHMS",
    "ENGINE_TRACE",
    "PROBLEM_TYPES",
    "Recommendation",
    "WarmStart",
    "WarmStartStore",
    "guarded_solve",
    "recommend_algorithm",
    "solve_with",
    "stall_window",
]
