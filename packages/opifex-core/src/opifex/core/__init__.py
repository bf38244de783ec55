"""opifex.core: the shared, chex-checked pytree interfaces of the opifex packages.

Every iterative method in opifex runs on one driver (``run_solver``: init / step /
terminate, a traced step budget, an implicit or unrolled adjoint) and returns one
``SolveResult`` with one status enum (``SolveStatus``); failures under ``jit`` are status codes,
bad arguments outside ``jit`` raise ``ValueError`` / ``TypeError``. ``OptaxSolver`` runs any
optax transformation as such a solver. ``implicit_root`` differentiates any solver's solution.
Standard problem families live in ``opifex.core.families``; meta-training (gradient estimators
for unrolled inner loops and the outer training loop, shared by ``opifex.l2o`` and
``opifex.meta``) in ``opifex.core.metatrain``. ``save_pytree`` and
``load_pytree`` checkpoint any pytree atomically; ``split_nnx`` and ``nnx_objective``
let any opifex optimiser train a Flax NNX model.
"""

from opifex.core._cache import default_cache_dir, enable_compilation_cache
from opifex.core._checkpoint import fsync_directory, load_metadata, load_pytree, save_pytree
from opifex.core._checks import (
    check_choice,
    check_finite,
    check_float_pytree,
    check_int_at_least,
    check_nonempty_pytree,
    check_positive,
    check_same_structure,
    check_scalar_output,
    check_shape,
    check_unknown_options,
)
from opifex.core._config import config_from_dict, replace_config
from opifex.core._deprecation import (
    rename_keywords,
    renamed_arguments,
    renamed_fields,
    renamed_fields_of,
)
from opifex.core._driver import ADJOINTS, Solver, run_solver
from opifex.core._gradient_descent import GradientDescent, GradientDescentState
from opifex.core._implicit import implicit_root
from opifex.core._metrics import speedup, steps_to_target
from opifex.core._nnx import merge_nnx, nnx_objective, nnx_params, split_nnx
from opifex.core._optax_solver import BestIterate, OptaxSolver, OptaxSolverState
from opifex.core._result import SolveResult
from opifex.core._status import SolveStatus, status_message
from opifex.core._task_family import TaskFamily, check_task_family
from opifex.core._tree import tree_axpy, tree_l2_norm, tree_vdot, tree_where

__all__ = [
    "ADJOINTS",
    "BestIterate",
    "GradientDescent",
    "GradientDescentState",
    "OptaxSolver",
    "OptaxSolverState",
    "SolveResult",
    "SolveStatus",
    "Solver",
    "TaskFamily",
    "check_choice",
    "check_finite",
    "check_float_pytree",
    "check_int_at_least",
    "check_nonempty_pytree",
    "check_positive",
    "check_same_structure",
    "check_scalar_output",
    "check_shape",
    "check_task_family",
    "check_unknown_options",
    "config_from_dict",
    "default_cache_dir",
    "enable_compilation_cache",
    "fsync_directory",
    "implicit_root",
    "load_metadata",
    "load_pytree",
    "merge_nnx",
    "nnx_objective",
    "nnx_params",
    "rename_keywords",
    "renamed_arguments",
    "renamed_fields",
    "renamed_fields_of",
    "replace_config",
    "run_solver",
    "save_pytree",
    "speedup",
    "split_nnx",
    "status_message",
    "steps_to_target",
    "tree_axpy",
    "tree_l2_norm",
    "tree_vdot",
    "tree_where",
]
