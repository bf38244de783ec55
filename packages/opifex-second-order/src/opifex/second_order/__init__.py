"""L-BFGS, hybrid Adam to L-BFGS and Gauss-Newton / Levenberg-Marquardt solvers in JAX.

``scale_by_more_thuente_linesearch`` (More & Thuente's strong Wolfe line search, L-BFGS's
default) is an optax transformation usable in any optax chain.

The More-Garbow-Hillstrom least-squares test set (``mgh_problems``) and the NIST StRD
nonlinear regression problems with certified answers (``nist_problems``) ship with the package
so that users can check a solver against published optima.
"""

from opifex.second_order._gauss_newton import (
    GaussNewtonConfig,
    GaussNewtonSolver,
    GaussNewtonState,
    create_gauss_newton_solver,
    least_squares,
)
from opifex.second_order._hybrid import (
    HybridOptimizer,
    HybridOptimizerConfig,
    HybridState,
    hybrid_optimizer,
)
from opifex.second_order._lbfgs import (
    LBFGSConfig,
    LBFGSSolver,
    LBFGSState,
    create_lbfgs_optimizer,
    minimize,
)
from opifex.second_order._mgh import LeastSquaresProblem, get_mgh_problem, mgh_problems
from opifex.second_order._more_thuente import (
    MoreThuenteInfo,
    MoreThuenteStatus,
    ScaleByMoreThuenteState,
    scale_by_more_thuente_linesearch,
)
from opifex.second_order._nist import NistProblem, get_nist_problem, nist_problems

__all__ = [
    "GaussNewtonConfig",
    "GaussNewtonSolver",
    "GaussNewtonState",
    "HybridOptimizer",
    "HybridOptimizerConfig",
    "HybridState",
    "LBFGSConfig",
    "LBFGSSolver",
    "LBFGSState",
    "LeastSquaresProblem",
    "MoreThuenteInfo",
    "MoreThuenteStatus",
    "NistProblem",
    "ScaleByMoreThuenteState",
    "create_gauss_newton_solver",
    "create_lbfgs_optimizer",
    "get_mgh_problem",
    "get_nist_problem",
    "hybrid_optimizer",
    "least_squares",
    "mgh_problems",
    "minimize",
    "nist_problems",
    "scale_by_more_thuente_linesearch",
]
