"""``Curriculum``: an unroll horizon that grows in stages during meta-training.

Short unrolls give cheap, low-variance meta-gradients but teach short-horizon behaviour; long
ones are what the inner loop is meant for. A curriculum starts short and lengthens the horizon
stage by stage (as in Metz et al., 2019, "Understanding and correcting pathologies in the
training of learned optimizers"). Promotion here is by a fixed number of outer steps per stage,
not by validation progress: the horizon is then a pure function of the outer step, so a run
resumed from a checkpoint follows exactly the schedule of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math

from opifex.core._checks import check_int_at_least


@dataclasses.dataclass(frozen=True)
class Curriculum:
    """Training horizons ``horizons[0] < horizons[1] < ...``, each for ``steps_per_stage`` steps.

    Stage ``i`` covers outer steps ``[i * steps_per_stage, (i + 1) * steps_per_stage)``; the
    last stage lasts until the end of training. ``meta_train`` resets its early-stopping
    patience at each promotion.

    Args:
        horizons: increasing positive ints (a list is stored as a tuple).
        steps_per_stage: outer steps per stage (>= 1).

    Raises:
        TypeError / ValueError: an empty, non-increasing or non-integer ``horizons``, or a bad
            ``steps_per_stage``.

    Example:
        >>> curriculum = Curriculum(horizons=(10, 20, 40), steps_per_stage=100)
        >>> [curriculum.horizon_at(step) for step in (0, 99, 100, 250, 10_000)]
        [10, 10, 20, 40, 40]
    """

    horizons: tuple[int, ...]
    steps_per_stage: int

    def __post_init__(self) -> None:
        if isinstance(self.horizons, str) or not isinstance(self.horizons, tuple | list):
            raise TypeError(f"horizons must be a tuple of ints, got {self.horizons!r}")
        object.__setattr__(self, "horizons", tuple(self.horizons))
        if not self.horizons:
            raise ValueError("horizons must not be empty")
        for i, horizon in enumerate(self.horizons):
            check_int_at_least(horizon, 1, f"horizons[{i}]")
        if any(b <= a for a, b in zip(self.horizons, self.horizons[1:], strict=False)):
            raise ValueError(f"horizons must be strictly increasing, got {self.horizons}")
        check_int_at_least(self.steps_per_stage, 1, "steps_per_stage")

    @classmethod
    def geometric(cls, start: int, stop: int, num_stages: int, steps_per_stage: int) -> Curriculum:
        """Horizons growing geometrically from ``start`` to ``stop`` (rounded, deduplicated).

        Example:
            >>> Curriculum.geometric(10, 80, 4, steps_per_stage=50).horizons
            (10, 20, 40, 80)
        """
        check_int_at_least(start, 1, "start")
        check_int_at_least(stop, start, "stop")
        check_int_at_least(num_stages, 1, "num_stages")
        if num_stages == 1:
            return cls((stop,), steps_per_stage)
        ratio = math.log(stop / start) / (num_stages - 1)
        horizons = [round(start * math.exp(i * ratio)) for i in range(num_stages)]
        horizons[-1] = stop
        return cls(tuple(sorted(set(horizons))), steps_per_stage)

    def stage_at(self, outer_step: int) -> int:
        """The stage (0-based) in force at ``outer_step``."""
        return min(outer_step // self.steps_per_stage, len(self.horizons) - 1)

    def horizon_at(self, outer_step: int) -> int:
        """The training horizon at ``outer_step``."""
        return self.horizons[self.stage_at(outer_step)]
