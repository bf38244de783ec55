"""The NIST StRD nonlinear regression problems (27 models with certified answers) in JAX.

NIST's Statistical Reference Datasets (StRD, NIST Information Technology Laboratory; public-domain
US government data) give, for each of 27 nonlinear regression problems, the data, the model,
two starting points ("start 1", far from the solution, and "start 2", closer) and the certified
least-squares parameters and residual sum of squares, computed in 128-bit arithmetic and
printed to 11 significant digits. They are graded by NIST as of lower, average or higher
difficulty. The data ship with the package (``data/nist_strd.json``, written from NIST's
``.dat`` files by ``scripts/generate_nist_data.py``); the models are written here in JAX.

The residual of a problem is ``y - model(b, x)`` (``log(y) - model`` for Nelson, whose model is
for ``log y``), so ``sum(residual_fn(b) ** 2)`` at the certified ``b`` is the certified residual
sum of squares. Accuracy is scored as in McCullough (1999) by the log relative error
``LRE = -log10(|b - c| / |c|)`` of each parameter ``b`` against its certified value ``c``,
i.e. the number of correct significant digits, capped at the 11 digits NIST prints.

Reference:
    McCullough, B. D. (1999), "Assessing the reliability of statistical software: Part II",
    The American Statistician 53(2), 149-159.

Example:
    >>> import jax
    >>> from opifex.second_order import get_nist_problem
    >>> problem = get_nist_problem("MGH09")
    >>> problem.num_params, problem.num_observations, problem.difficulty
    (4, 11, 'higher')
    >>> with jax.enable_x64(True):
    ...     rss = problem.value(problem.certified_array())
    >>> abs(float(rss) / problem.certified_rss - 1.0) < 1e-9
    True
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np

# NIST prints certified values to 11 significant digits: a log relative error above that
# only measures the rounding of the printed value
CERTIFIED_DIGITS = 11.0


def _exp_rise(b: jax.Array, x: jax.Array) -> jax.Array:  # Misra1a, BoxBOD
    return b[0] * (1.0 - jnp.exp(-b[1] * x[0]))


def _chwirut(b: jax.Array, x: jax.Array) -> jax.Array:
    return jnp.exp(-b[0] * x[0]) / (b[1] + b[2] * x[0])


def _lanczos(b: jax.Array, x: jax.Array) -> jax.Array:
    t = x[0]
    return b[0] * jnp.exp(-b[1] * t) + b[2] * jnp.exp(-b[3] * t) + b[4] * jnp.exp(-b[5] * t)


def _gauss(b: jax.Array, x: jax.Array) -> jax.Array:
    t = x[0]
    return (
        b[0] * jnp.exp(-b[1] * t)
        + b[2] * jnp.exp(-((t - b[3]) ** 2) / b[4] ** 2)
        + b[5] * jnp.exp(-((t - b[6]) ** 2) / b[7] ** 2)
    )


def _danwood(b: jax.Array, x: jax.Array) -> jax.Array:
    return b[0] * x[0] ** b[1]


def _misra1b(b: jax.Array, x: jax.Array) -> jax.Array:
    return b[0] * (1.0 - (1.0 + b[1] * x[0] / 2.0) ** -2)


def _misra1c(b: jax.Array, x: jax.Array) -> jax.Array:
    return b[0] * (1.0 - (1.0 + 2.0 * b[1] * x[0]) ** -0.5)


def _misra1d(b: jax.Array, x: jax.Array) -> jax.Array:
    return b[0] * b[1] * x[0] / (1.0 + b[1] * x[0])


def _rational(num: int) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``(b1 + b2 x + ... ) / (1 + b_{num+1} x + ...)`` with ``num`` numerator coefficients."""

    def model(b: jax.Array, x: jax.Array) -> jax.Array:
        t = x[0]
        numerator = jnp.polyval(b[:num][::-1], t)
        denominator = jnp.polyval(jnp.concatenate([b[num:][::-1], jnp.ones((1,), b.dtype)]), t)
        return numerator / denominator

    return model


def _nelson(b: jax.Array, x: jax.Array) -> jax.Array:  # a model of log(y)
    return b[0] - b[1] * x[0] * jnp.exp(-b[2] * x[1])


def _mgh17(b: jax.Array, x: jax.Array) -> jax.Array:
    t = x[0]
    return b[0] + b[1] * jnp.exp(-t * b[3]) + b[2] * jnp.exp(-t * b[4])


def _roszman1(b: jax.Array, x: jax.Array) -> jax.Array:
    t = x[0]
    return b[0] - b[1] * t - jnp.arctan(b[2] / (t - b[3])) / math.pi


def _enso(b: jax.Array, x: jax.Array) -> jax.Array:
    w = 2.0 * math.pi * x[0]
    return (
        b[0]
        + b[1] * jnp.cos(w / 12.0)
        + b[2] * jnp.sin(w / 12.0)
        + b[4] * jnp.cos(w / b[3])
        + b[5] * jnp.sin(w / b[3])
        + b[7] * jnp.cos(w / b[6])
        + b[8] * jnp.sin(w / b[6])
    )


def _mgh09(b: jax.Array, x: jax.Array) -> jax.Array:
    t = x[0]
    return b[0] * (t**2 + t * b[1]) / (t**2 + t * b[2] + b[3])


def _rat42(b: jax.Array, x: jax.Array) -> jax.Array:
    return b[0] / (1.0 + jnp.exp(b[1] - b[2] * x[0]))


def _mgh10(b: jax.Array, x: jax.Array) -> jax.Array:
    return b[0] * jnp.exp(b[1] / (x[0] + b[2]))


def _eckerle4(b: jax.Array, x: jax.Array) -> jax.Array:
    return (b[0] / b[1]) * jnp.exp(-0.5 * ((x[0] - b[2]) / b[1]) ** 2)


def _rat43(b: jax.Array, x: jax.Array) -> jax.Array:
    return b[0] / (1.0 + jnp.exp(b[1] - b[2] * x[0])) ** (1.0 / b[3])


def _bennett5(b: jax.Array, x: jax.Array) -> jax.Array:
    return b[0] * (b[1] + x[0]) ** (-1.0 / b[2])


_MODELS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "Misra1a": _exp_rise,
    "Chwirut2": _chwirut,
    "Chwirut1": _chwirut,
    "Lanczos3": _lanczos,
    "Gauss1": _gauss,
    "Gauss2": _gauss,
    "DanWood": _danwood,
    "Misra1b": _misra1b,
    "Kirby2": _rational(3),
    "Hahn1": _rational(4),
    "Nelson": _nelson,
    "MGH17": _mgh17,
    "Lanczos1": _lanczos,
    "Lanczos2": _lanczos,
    "Gauss3": _gauss,
    "Misra1c": _misra1c,
    "Misra1d": _misra1d,
    "Roszman1": _roszman1,
    "ENSO": _enso,
    "MGH09": _mgh09,
    "Thurber": _rational(4),
    "BoxBOD": _exp_rise,
    "Rat42": _rat42,
    "MGH10": _mgh10,
    "Eckerle4": _eckerle4,
    "Rat43": _rat43,
    "Bennett5": _bennett5,
}
_LOG_RESPONSE = frozenset({"Nelson"})  # the model is for log(y)


def _residual(
    model: Callable[[jax.Array, jax.Array], jax.Array],
    predictors: np.ndarray,
    response: np.ndarray,
    n: int,
    name: str,
    b: jax.Array,
) -> jax.Array:
    b = jnp.asarray(b)
    if b.shape != (n,):
        raise ValueError(f"{name}: parameters must have shape ({n},), got {b.shape}")
    if not jnp.issubdtype(b.dtype, jnp.floating):
        b = b.astype(float)
    x = jnp.asarray(predictors, dtype=b.dtype)
    return jnp.asarray(response, dtype=b.dtype) - model(b, x)


@dataclasses.dataclass(frozen=True, eq=False)
class NistProblem:
    """One NIST StRD nonlinear regression problem: minimise ``sum(residual_fn(b) ** 2)``.

    Static and hashable (by identity: ``nist_problems()`` returns the same objects on every
    call), so a problem or its ``residual_fn`` can be a ``jit`` static argument.

    Attributes:
        name: NIST's name, e.g. ``"MGH09"``.
        residual_fn: ``b (n,) -> y - model(b, x)`` of shape ``(m,)``, pure JAX, in the dtype
            of ``b`` (the data are cast to it).
        starts: NIST's two starting points, ``(start 1, start 2)``.
        certified_params: the certified least-squares parameters (11 significant digits).
        certified_std_devs: their certified standard deviations.
        certified_rss: the certified residual sum of squares.
        certified_residual_sd: the certified residual standard deviation,
            ``sqrt(rss / (m - n))``.
        num_observations: ``m``.
        difficulty: NIST's grade: ``"lower"``, ``"average"`` or ``"higher"``.
        formula: NIST's model, verbatim (``+ e`` is the error term).
        predictors: the predictor columns ``x`` (one, or two for Nelson), as NIST gives them.
        response: the response ``y`` as NIST gives it.
    """

    name: str
    residual_fn: Callable[[jax.Array], jax.Array]
    starts: tuple[tuple[float, ...], tuple[float, ...]]
    certified_params: tuple[float, ...]
    certified_std_devs: tuple[float, ...]
    certified_rss: float
    certified_residual_sd: float
    num_observations: int
    difficulty: str
    formula: str
    predictors: tuple[tuple[float, ...], ...]
    response: tuple[float, ...]

    @property
    def num_params(self) -> int:
        """``n``, the number of parameters."""
        return len(self.certified_params)

    def initial_params(self, start: int = 1, dtype: jnp.dtype | None = None) -> jax.Array:
        """NIST's start ``1`` or ``2`` as a JAX array (float64 when x64 is enabled)."""
        if start not in (1, 2):
            raise ValueError(f"start must be 1 or 2, got {start!r}")
        return jnp.asarray(self.starts[start - 1], dtype=dtype if dtype is not None else float)

    def certified_array(self, dtype: jnp.dtype | None = None) -> jax.Array:
        """The certified parameters as a JAX array."""
        return jnp.asarray(self.certified_params, dtype=dtype if dtype is not None else float)

    def value(self, b: jax.Array) -> jax.Array:
        """The residual sum of squares ``sum(residual_fn(b) ** 2)`` (0-d array)."""
        r = self.residual_fn(b)
        return jnp.sum(r * r)

    def log_relative_errors(self, b: jax.Array | np.ndarray) -> np.ndarray:
        """Correct significant digits of each parameter: ``-log10(|b - c| / |c|)``.

        Computed in float64 on the host, clipped to ``[0, 11]`` (NIST's 11 printed digits;
        0 when the relative error is 1 or more, or ``b`` is not finite).

        Example:
            >>> problem = get_nist_problem("Misra1a")
            >>> problem.log_relative_errors([2.3894212918e2, 5.5015e-4]).round(2).tolist()
            [11.0, 4.93]
        """
        b = np.asarray(b, dtype=np.float64)
        c = np.asarray(self.certified_params, dtype=np.float64)
        if b.shape != c.shape:
            raise ValueError(f"b must have shape {c.shape}, got {b.shape}")
        with np.errstate(divide="ignore", invalid="ignore"):
            lre = -np.log10(np.abs(b - c) / np.abs(c))
        lre = np.where(np.isfinite(b), lre, 0.0)
        return np.clip(np.nan_to_num(lre, nan=0.0, posinf=CERTIFIED_DIGITS), 0.0, CERTIFIED_DIGITS)

    def min_log_relative_error(self, b: jax.Array | np.ndarray) -> float:
        """The fewest correct significant digits over the parameters (McCullough's score)."""
        return float(np.min(self.log_relative_errors(b)))


def _load() -> dict:
    text = resources.files("opifex.second_order").joinpath("data", "nist_strd.json").read_text()
    return json.loads(text)["problems"]


def _make(name: str, entry: dict) -> NistProblem:
    predictors = np.asarray(entry["x"], dtype=np.float64)
    response = np.asarray(entry["y"], dtype=np.float64)
    fitted = np.log(response) if name in _LOG_RESPONSE else response
    n = len(entry["certified_params"])
    residual_fn = functools.partial(_residual, _MODELS[name], predictors, fitted, n, name)
    return NistProblem(
        name=name,
        residual_fn=residual_fn,
        starts=(tuple(entry["starts"][0]), tuple(entry["starts"][1])),
        certified_params=tuple(entry["certified_params"]),
        certified_std_devs=tuple(entry["certified_std_devs"]),
        certified_rss=entry["certified_rss"],
        certified_residual_sd=entry["certified_residual_sd"],
        num_observations=entry["num_observations"],
        difficulty=entry["difficulty"],
        formula=entry["formula"],
        predictors=tuple(tuple(column) for column in entry["x"]),
        response=tuple(entry["y"]),
    )


@functools.cache
def nist_problems() -> tuple[NistProblem, ...]:
    """The 27 NIST StRD nonlinear regression problems, in NIST's order of difficulty.

    Lower, then average, then higher difficulty; the same objects on every call.

    Example:
        >>> from opifex.second_order import nist_problems
        >>> problems = nist_problems()
        >>> len(problems), problems[0].name, problems[-1].name
        (27, 'Misra1a', 'Bennett5')
    """
    return tuple(_make(name, entry) for name, entry in _load().items())


def get_nist_problem(name: str) -> NistProblem:
    """The NIST StRD problem called ``name`` (NIST's spelling, e.g. ``"Misra1a"``).

    Raises:
        ValueError: if no problem has that name (the message lists the names).

    Example:
        >>> from opifex.second_order import get_nist_problem
        >>> get_nist_problem("Bennett5").starts
        ((-2000.0, 50.0, 0.8), (-1500.0, 45.0, 0.85))
    """
    for problem in nist_problems():
        if problem.name == name:
            return problem
    names = ", ".join(p.name for p in nist_problems())
    raise ValueError(f"unknown NIST StRD problem {name!r}; expected one of: {names}")
