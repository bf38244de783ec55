"""Standard problem families: each a frozen, hashable ``TaskFamily`` (a batch is a ``vmap``).

* ``QuadraticFamily``: ``||W theta - y||^2`` (optionally with a prescribed condition number).
* ``RosenbrockFamily``: the extended Rosenbrock function from a random start.
* ``LassoFamily``: sparse regression, with ``ista`` / ``fista`` baselines.
* ``LogisticRegressionFamily``: L2-regularised logistic regression.
* ``TeacherStudentMLPFamily``: fit a random teacher MLP.
* ``SinusoidFamily``: few-shot sinusoid regression (MAML).
* ``PoissonFamily`` / ``BurgersFamily``: physics-informed networks for 1-D PDEs.
* ``ScaledFamily``: any family's tasks with the loss and the parameters at another scale.
"""

from opifex.core.families._burgers import BurgersFamily, BurgersPoints, BurgersTask
from opifex.core.families._lasso import (
    LassoFamily,
    LassoTask,
    ProximalGradient,
    ProximalGradientState,
    fista,
    ista,
    lasso_objective,
    soft_threshold,
)
from opifex.core.families._logistic import LogisticRegressionFamily, LogisticTask
from opifex.core.families._mlp import TeacherStudentMLPFamily, TeacherStudentTask
from opifex.core.families._poisson import PoissonFamily, PoissonTask
from opifex.core.families._quadratic import QuadraticFamily, QuadraticTask
from opifex.core.families._rosenbrock import RosenbrockFamily, RosenbrockTask
from opifex.core.families._scaled import ScaledFamily
from opifex.core.families._sinusoid import SinusoidFamily, SinusoidTask

__all__ = [
    "BurgersFamily",
    "BurgersPoints",
    "BurgersTask",
    "LassoFamily",
    "LassoTask",
    "LogisticRegressionFamily",
    "LogisticTask",
    "PoissonFamily",
    "PoissonTask",
    "ProximalGradient",
    "ProximalGradientState",
    "QuadraticFamily",
    "QuadraticTask",
    "RosenbrockFamily",
    "RosenbrockTask",
    "ScaledFamily",
    "SinusoidFamily",
    "SinusoidTask",
    "TeacherStudentMLPFamily",
    "TeacherStudentTask",
    "fista",
    "ista",
    "lasso_objective",
    "soft_threshold",
]
