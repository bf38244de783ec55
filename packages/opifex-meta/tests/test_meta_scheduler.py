"""AdaptiveLearningRateScheduler: the schedules against their closed forms and optax's, the
loss-driven rules against hand-computed sequences and a plain-Python reference, NaN / inf
losses, jit / scan / vmap of the functional core, the optax integrations and bad input."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from opifex.meta._scheduler import (
    SCHEDULER_STRATEGIES,
    AdaptiveLearningRateScheduler,
    SchedulerConfig,
    scheduled_learning_rate,
    scheduler_init,
    scheduler_update,
    set_learning_rate,
)

# float32 learning rates against float64 references
RTOL = 1e-6


def _adapt_all(scheduler, losses, start=0):
    return [scheduler.adapt(loss, epoch) for epoch, loss in enumerate(losses, start)]


# ---------------------------------------------------------------- deterministic strategies


def _closed_form(strategy, epoch, initial=0.2, low=0.01, horizon=10, rate=0.8):
    if strategy == "cosine_annealing":
        return low + (initial - low) * (1 + math.cos(math.pi * min(epoch, horizon) / horizon)) / 2
    if strategy == "exponential":
        return max(initial * rate**epoch, low)
    return initial + (low - initial) * min(epoch, horizon) / horizon


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["cosine_annealing", "exponential", "linear"])
def test_schedules_match_their_closed_forms_and_optax(strategy):
    scheduler = AdaptiveLearningRateScheduler(
        0.2, strategy, total_epochs=10, decay_rate=0.8, min_lr=0.01
    )
    epochs = np.arange(15)
    schedule = scheduler.as_schedule()
    got = np.array([float(schedule(e)) for e in epochs])
    expected = np.array([_closed_form(strategy, e) for e in epochs])
    np.testing.assert_allclose(got, expected, rtol=RTOL)
    reference = {
        "cosine_annealing": optax.cosine_decay_schedule(0.2, 10, alpha=0.01 / 0.2),
        "exponential": optax.exponential_decay(0.2, 1, 0.8, end_value=0.01),
        "linear": optax.linear_schedule(0.2, 0.01, 10),
    }[strategy]
    np.testing.assert_allclose(got, [float(reference(e)) for e in epochs], rtol=1e-5)
    # adapt gives the schedule whatever the loss, NaN included (counted, never used)
    losses = [1.0, np.nan, np.inf, *([2.0] * 12)]
    np.testing.assert_allclose(_adapt_all(scheduler, losses), got, rtol=RTOL)
    assert int(scheduler.state.num_nonfinite) == 2


def test_adaptation_frequency_holds_the_schedule_between_adaptations():
    scheduler = AdaptiveLearningRateScheduler(1.0, "linear", adaptation_frequency=3, total_epochs=9)
    got = [float(scheduler.as_schedule()(e)) for e in range(11)]
    expected = [1 - 3 * (e // 3) / 9 for e in range(11)]
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=1e-7)
    assert got[0] == got[1] == got[2] > got[3]  # changes only every third epoch


def test_exponential_never_goes_below_min_lr():
    schedule = AdaptiveLearningRateScheduler(
        1.0, "exponential", decay_rate=0.1, min_lr=1e-3
    ).as_schedule()
    assert float(schedule(2)) == pytest.approx(1e-2, rel=RTOL)
    assert float(schedule(3)) == pytest.approx(1e-3, rel=RTOL)
    assert float(schedule(1000)) == pytest.approx(1e-3, rel=RTOL)  # no underflow to 0


# ---------------------------------------------------------------- loss-driven strategies


def test_plateau_matches_a_hand_computed_sequence():
    scheduler = AdaptiveLearningRateScheduler(
        1.0, "plateau", performance_threshold=0.1, patience=2, factor=0.5
    )
    # 9.5 and 9.2 are not 10 % below 10: two bad adaptations -> halve; 8.0 improves; 8.0
    # twice -> halve; 7.0 is 10 % below 8.0 -> improvement, no change
    losses = [10.0, 9.5, 9.2, 8.0, 8.0, 8.0, 8.0, 7.0]
    expected = [1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    np.testing.assert_allclose(_adapt_all(scheduler, losses), expected, rtol=RTOL)
    assert float(scheduler.state.reference_loss) == 7.0
    assert int(scheduler.state.num_adaptations) == 8


def test_plateau_uses_the_absolute_reference_for_negative_losses():
    scheduler = AdaptiveLearningRateScheduler(1.0, "plateau", performance_threshold=0.1, patience=1)
    # -10.5 is not 10 % below -10 (that is -11); -11.5 is
    expected = [1.0, 0.5, 0.5]
    np.testing.assert_allclose(_adapt_all(scheduler, [-10.0, -10.5, -11.5]), expected)
    assert float(scheduler.state.reference_loss) == -11.5


def test_performance_matches_a_hand_computed_sequence():
    scheduler = AdaptiveLearningRateScheduler(
        0.1, "performance", performance_threshold=0.1, growth_factor=2.0, factor=0.5, max_lr=0.3
    )
    # no reference yet; 8 < 9 grows; 7.5 neither 10 % better nor worse; 9 rises; NaN is a
    # rise (reference stays 9); 6 < 8.1 grows; 1 grows; 0.1 grows but is capped at 0.3
    losses = [10.0, 8.0, 7.5, 9.0, np.nan, 6.0, 1.0, 0.1]
    expected = [0.1, 0.2, 0.2, 0.1, 0.05, 0.1, 0.2, 0.3]
    np.testing.assert_allclose(_adapt_all(scheduler, losses), expected, rtol=RTOL)
    assert int(scheduler.state.num_nonfinite) == 1


def test_performance_never_goes_below_min_lr():
    scheduler = AdaptiveLearningRateScheduler(1.0, "performance", factor=0.5, min_lr=0.2)
    got = _adapt_all(scheduler, [1.0, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_allclose(got, [1.0, 0.5, 0.25, 0.2, 0.2], rtol=RTOL)


def test_adaptive_strategies_look_at_the_loss_only_every_adaptation_frequency_epochs():
    scheduler = AdaptiveLearningRateScheduler(1.0, "plateau", adaptation_frequency=3, patience=1)
    # the NaNs fall between adaptations: counted, never used
    losses = [5.0, np.nan, np.nan, 5.0, np.nan, np.nan, 4.0, np.nan, np.nan]
    expected = [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    np.testing.assert_allclose(_adapt_all(scheduler, losses), expected, rtol=RTOL)
    assert int(scheduler.state.num_adaptations) == 3
    assert int(scheduler.state.num_nonfinite) == 6


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_nonfinite_loss_is_no_improvement_for_plateau(bad):
    scheduler = AdaptiveLearningRateScheduler(1.0, "plateau", patience=2)
    got = _adapt_all(scheduler, [1.0, bad, bad, 0.5])
    np.testing.assert_allclose(got, [1.0, 1.0, 0.5, 0.5])
    assert np.isfinite(got).all()
    assert float(scheduler.state.reference_loss) == 0.5  # -inf never became the best loss


def test_a_nonfinite_first_loss_shrinks_the_rate_for_performance():
    scheduler = AdaptiveLearningRateScheduler(1.0, "performance", factor=0.5)
    np.testing.assert_allclose(_adapt_all(scheduler, [np.nan, 2.0, 1.0]), [0.5, 0.5, 0.525])
    assert float(scheduler.state.reference_loss) == 1.0


class _PlateauReference:
    """Plain-Python plateau rule, written from the documentation."""

    def __init__(self, learning_rate, rtol, patience, factor, low, frequency):
        self.learning_rate, self.rtol, self.patience = learning_rate, rtol, patience
        self.factor, self.low, self.frequency = factor, low, frequency
        self.best, self.bad = math.inf, 0

    def __call__(self, loss, epoch):
        if epoch % self.frequency:
            return self.learning_rate
        if math.isfinite(loss) and (
            self.best == math.inf or loss < self.best - self.rtol * abs(self.best)
        ):
            self.best, self.bad = loss, 0
        else:
            self.bad += 1
        if self.bad >= self.patience:
            self.learning_rate = max(self.learning_rate * self.factor, self.low)
            self.bad = 0
        return self.learning_rate


def _random_losses(seed, n=40):
    rng = np.random.default_rng(seed)
    losses = np.exp(-0.05 * np.arange(n) + 0.2 * rng.standard_normal(n))
    losses[rng.random(n) < 0.1] = np.nan
    return losses.astype(np.float32)


# ---------------------------------------------------------------- functional core


def _scan_rates(config, losses):
    def body(state, inputs):
        loss, epoch = inputs
        learning_rate, state = scheduler_update(config, state, loss, epoch)
        return state, learning_rate

    epochs = jnp.arange(losses.shape[-1])
    return jax.lax.scan(body, scheduler_init(config), (losses, epochs))[1]


PLATEAU = SchedulerConfig(
    1.0,
    "plateau",
    adaptation_frequency=2,
    performance_threshold=0.05,
    patience=2,
    factor=0.7,
    min_learning_rate=0.1,
)


def test_scan_and_vmap_match_the_plain_python_reference():
    batch = np.stack([_random_losses(seed) for seed in range(3)])
    rates = jax.jit(jax.vmap(functools.partial(_scan_rates, PLATEAU)))(jnp.asarray(batch))
    for losses, got in zip(batch, np.asarray(rates), strict=True):
        reference = _PlateauReference(1.0, 0.05, 2, 0.7, 0.1, 2)
        expected = [reference(float(loss), epoch) for epoch, loss in enumerate(losses)]
        np.testing.assert_allclose(got, expected, rtol=1e-5)
        assert len(set(expected)) > 2  # the sequence exercises several reductions


def test_jit_matches_eager_and_does_not_recompile():
    update = jax.jit(scheduler_update, static_argnums=0)
    losses = _random_losses(5, n=6)
    eager_state = jitted_state = scheduler_init(PLATEAU)
    for epoch, loss in enumerate(losses):
        eager_rate, eager_state = scheduler_update(PLATEAU, eager_state, loss, epoch)
        jitted_rate, jitted_state = update(
            PLATEAU, jitted_state, jnp.float32(loss), jnp.int32(epoch)
        )
        assert float(jitted_rate) == pytest.approx(float(eager_rate), rel=RTOL)
    jax.tree.map(np.testing.assert_array_equal, eager_state, jitted_state)
    assert update._cache_size() == 1


def test_facade_matches_the_functional_core_and_resets():
    scheduler = AdaptiveLearningRateScheduler(
        1.0,
        "plateau",
        2,
        0.05,
        patience=2,
        factor=0.7,
        min_lr=0.1,
    )
    assert scheduler.config == PLATEAU
    losses = _random_losses(1)
    got = _adapt_all(scheduler, losses)
    np.testing.assert_allclose(got, np.asarray(_scan_rates(PLATEAU, jnp.asarray(losses))))
    assert scheduler.current_lr == got[-1]
    assert "plateau" in repr(scheduler)
    scheduler.reset()
    assert scheduler.current_lr == 1.0
    assert scheduler.adapt(jnp.float32(2.0), np.int64(0)) == 1.0  # array scalars accepted
    assert scheduler.adapt(np.array(2.0), jnp.int32(1)) == 1.0


def test_scheduled_learning_rate_traces_the_epoch():
    config = SchedulerConfig(0.5, "cosine_annealing", total_epochs=4)
    got = jax.vmap(functools.partial(scheduled_learning_rate, config))(jnp.arange(-1, 6))
    root = math.sqrt(0.5)  # cos(pi / 4)
    expected = [0.5, 0.5, 0.25 * (1 + root), 0.25, 0.25 * (1 - root), 0.0, 0.0]
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=1e-8)  # epoch -1 counts as 0


# ---------------------------------------------------------------- optax integration


def test_set_learning_rate_drives_an_injected_adam():
    params = jnp.array([1.0, -2.0, 3.0])
    grads = jnp.array([0.5, 0.1, -4.0])
    injected = optax.inject_hyperparams(optax.adam)(learning_rate=1.0)
    state = set_learning_rate(injected.init(params), 0.03)
    assert state.hyperparams["learning_rate"].dtype == jnp.float32
    updates, state = injected.update(grads, state)
    # Adam's first step is -learning_rate * g / (|g| + eps); float32 bias corrections: 1e-4
    np.testing.assert_allclose(updates, -0.03 * np.sign(grads), rtol=1e-4)
    # nested inside a chain, and under jit
    chained = optax.chain(optax.clip(10.0), optax.inject_hyperparams(optax.sgd)(learning_rate=1.0))
    chain_state = jax.jit(set_learning_rate)(chained.init(params), 0.25)
    updates, _ = chained.update(grads, chain_state)
    np.testing.assert_allclose(updates, -0.25 * grads, rtol=1e-6)


def test_set_learning_rate_errors():
    params = jnp.zeros(2)
    with pytest.raises(ValueError, match="no injected learning_rate"):
        set_learning_rate(optax.adam(0.1).init(params), 0.2)
    scheduled = optax.inject_hyperparams(optax.sgd)(learning_rate=optax.linear_schedule(1, 0, 5))
    with pytest.raises(ValueError, match="schedule"):
        set_learning_rate(scheduled.init(params), 0.2)


def test_as_schedule_in_an_optax_optimizer():
    scheduler = AdaptiveLearningRateScheduler(0.5, "exponential", decay_rate=0.5)
    optimizer = optax.sgd(scheduler.as_schedule())
    params = jnp.zeros(1)
    state = optimizer.init(params)
    for count in range(3):
        updates, state = optimizer.update(jnp.ones(1), state)
        assert float(updates[0]) == pytest.approx(-0.5 * 0.5**count, rel=RTOL)
    with pytest.raises(ValueError, match="depends on the loss"):
        AdaptiveLearningRateScheduler(0.1, "plateau").as_schedule()


@pytest.mark.parametrize("strategy", ["performance", "linear"])
def test_stateful_schedule_in_inject_hyperparams_matches_adapt(strategy):
    scheduler = AdaptiveLearningRateScheduler(0.1, strategy, total_epochs=4, growth_factor=2.0)
    optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=scheduler.as_stateful_schedule())
    params = jnp.zeros(1)
    state = optimizer.init(params)
    update = jax.jit(optimizer.update)
    losses = [4.0, 3.0, 5.0, np.nan, 1.0]
    used = []
    for loss in losses:
        updates, state = update(jnp.ones(1), state, params, value=jnp.float32(loss))
        used.append(-float(updates[0]))  # sgd: the update is -learning_rate * grad
    np.testing.assert_allclose(used, _adapt_all(scheduler, losses), rtol=RTOL)
    assert int(state.hyperparams_states["learning_rate"].count) == len(losses)
    with pytest.raises(ValueError, match="value=loss"):
        optimizer.update(jnp.ones(1), state, params)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"initial_lr": 0.0}, ValueError, "initial_learning_rate"),
        ({"initial_lr": "0.1"}, TypeError, "initial_learning_rate"),
        ({"strategy": "cosine"}, ValueError, "'plateau', 'performance'"),
        ({"strategy": 3}, TypeError, "strategy"),
        ({"adaptation_frequency": 0}, ValueError, "adaptation_frequency"),
        ({"adaptation_frequency": 1.5}, TypeError, "adaptation_frequency"),
        ({"performance_threshold": -0.1}, ValueError, "performance_threshold"),
        ({"performance_threshold": 1.0}, ValueError, "performance_threshold"),
        ({"performance_threshold": np.nan}, ValueError, "performance_threshold"),
        ({"total_epochs": 0}, ValueError, "total_epochs"),
        ({"decay_rate": 0.0}, ValueError, "decay_rate"),
        ({"decay_rate": 1.5}, ValueError, "decay_rate"),
        ({"min_lr": -1.0}, ValueError, "min_learning_rate"),
        ({"min_lr": 1.0}, ValueError, "min_learning_rate"),
        ({"patience": 0}, ValueError, "patience"),
        ({"factor": 1.0}, ValueError, "factor"),
        ({"factor": True}, TypeError, "factor"),
        ({"growth_factor": 0.9}, ValueError, "growth_factor"),
        ({"growth_factor": np.inf}, ValueError, "growth_factor"),
        ({"max_lr": 0.01}, ValueError, "max_learning_rate"),
        ({"max_lr": "big"}, TypeError, "max_learning_rate"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    kwargs = {"initial_lr": 0.1, **kwargs}
    with pytest.raises(error, match=match):
        AdaptiveLearningRateScheduler(**kwargs)


def test_every_strategy_is_accepted():
    for strategy in SCHEDULER_STRATEGIES:
        assert AdaptiveLearningRateScheduler(0.1, strategy).config.strategy == strategy


def test_bad_adapt_arguments():
    scheduler = AdaptiveLearningRateScheduler(0.1, "plateau")
    with pytest.raises(ValueError, match="epoch"):
        scheduler.adapt(1.0, -1)
    with pytest.raises(TypeError, match="epoch"):
        scheduler.adapt(1.0, 1.0)
    with pytest.raises(TypeError, match="epoch"):
        scheduler.adapt(1.0, jnp.float32(1.0))
    with pytest.raises(TypeError, match="loss"):
        scheduler.adapt("1.0", 0)
    with pytest.raises(ValueError, match="loss must be a scalar"):
        scheduler.adapt(jnp.ones(2), 0)
    assert int(scheduler.state.num_adaptations) == 0  # nothing was recorded
