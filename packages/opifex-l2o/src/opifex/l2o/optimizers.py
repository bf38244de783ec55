"""The building blocks of the learned optimisers, for users who assemble their own.

* ``FeatureState``, ``init_features``, ``update_features``: the per-coordinate features the MLP
  optimiser reads (configured by ``opifex.l2o.FeatureConfig``);
* ``preprocess_gradient``: the LSTM optimiser's log/sign gradient preprocessing;
* ``LSTMOptimizerState``, ``LearnableSGDState``, ``LearnableAdamState``: the optimisers' states.
"""

from opifex.l2o._features import FeatureState, init_features, update_features
from opifex.l2o._learnable import LearnableAdamState, LearnableSGDState
from opifex.l2o._lstm import LSTMOptimizerState, preprocess_gradient

__all__ = [
    "FeatureState",
    "LSTMOptimizerState",
    "LearnableAdamState",
    "LearnableSGDState",
    "init_features",
    "preprocess_gradient",
    "update_features",
]
