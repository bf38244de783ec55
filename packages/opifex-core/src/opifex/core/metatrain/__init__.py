"""opifex.core.metatrain: meta-training of any meta-parameters that build an inner loop.

Meta-parameters ``phi`` build an ``InnerLoop``'s start and its update rule: the weights of a
learned optimiser (``LearnedOptimizer``), MAML's initialisation (``LearnedInit`` with SGD), an
initialisation for any optax optimiser, Meta-SGD's initialisation and step sizes. On top:

* the unroll (``init_unroll``, ``init_unrolls``, ``unroll``) and its meta-losses
  (``truncation_meta_loss``: ``"mean"``, ``"log_mean"``, ``"final_query"``);
* meta-gradient estimators (``MetaGradientEstimator``): whole unrolls by full
  backpropagation (``full_backprop``), first order (``first_order``) or Reptile's direction
  (``reptile``), and persistent truncated unrolls by truncated backpropagation
  (``truncated_bptt``), persistent evolution strategies (``pes``) or truncated evolution
  strategies (``truncated_es``);
* the outer loop ``meta_train`` (``MetaTrainConfig``): vmapped meta-batches sharded over
  devices, clipping, non-finite handling, validation and early stopping, a horizon
  ``Curriculum``, atomic checkpoints with exact resume, a progress bar; its record
  (``MetaTrainResult``, ``MetaTrainHistory``, ``MetaTrainState``);
* ``WarmStartStore``: solved problems kept by descriptor, to start similar ones from.

``opifex.l2o`` (learned optimisers) and ``opifex.meta`` (MAML and its relatives) build on it.
"""

from opifex.core.metatrain._curriculum import Curriculum
from opifex.core.metatrain._estimator import MetaGradientEstimator, MetaGradientInfo
from opifex.core.metatrain._inner import InnerLoop, LearnedInit, LearnedOptimizer, MakeOptimizer
from opifex.core.metatrain._meta_config import ESTIMATORS, MetaTrainConfig
from opifex.core.metatrain._meta_state import MetaTrainHistory, MetaTrainResult, MetaTrainState
from opifex.core.metatrain._meta_train import estimator_from_config, meta_train
from opifex.core.metatrain._pes import PESState, pes
from opifex.core.metatrain._truncated_bptt import truncated_bptt
from opifex.core.metatrain._truncated_es import truncated_es
from opifex.core.metatrain._unroll import (
    META_LOSSES,
    UnrollOutput,
    UnrollState,
    init_unroll,
    init_unrolls,
    truncation_meta_loss,
    unroll,
)
from opifex.core.metatrain._warm_start import WarmStart, WarmStartStore
from opifex.core.metatrain._whole_unroll import first_order, full_backprop, reptile

__all__ = [
    "ESTIMATORS",
    "META_LOSSES",
    "Curriculum",
    "InnerLoop",
    "LearnedInit",
    "LearnedOptimizer",
    "MakeOptimizer",
    "MetaGradientEstimator",
    "MetaGradientInfo",
    "MetaTrainConfig",
    "MetaTrainHistory",
    "MetaTrainResult",
    "MetaTrainState",
    "PESState",
    "UnrollOutput",
    "UnrollState",
    "WarmStart",
    "WarmStartStore",
    "estimator_from_config",
    "first_order",
    "full_backprop",
    "init_unroll",
    "init_unrolls",
    "meta_train",
    "pes",
    "reptile",
    "truncated_bptt",
    "truncated_es",
    "truncation_meta_loss",
    "unroll",
]
