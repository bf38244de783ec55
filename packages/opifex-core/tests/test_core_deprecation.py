"""Old spellings keep working for one release, with a DeprecationWarning."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import pytest

from opifex.core import (
    GradientDescent,
    SolveResult,
    config_from_dict,
    renamed_fields,
    renamed_fields_of,
    replace_config,
    run_solver,
)


@renamed_fields(max_iterations="max_steps", tolerance="atol")
@dataclasses.dataclass(frozen=True)
class _Config:
    max_steps: int = 10
    atol: float = 1e-6

    def __post_init__(self):
        if self.max_steps < 0:
            raise ValueError("max_steps must be >= 0")


def test_old_keyword_and_attribute_warn_and_map_to_the_new_field():
    with pytest.warns(DeprecationWarning, match=r"'max_iterations' is deprecated.*'max_steps'"):
        config = _Config(max_iterations=3)
    assert config == _Config(max_steps=3)
    with pytest.warns(DeprecationWarning, match="'tolerance'"):
        assert config.tolerance == 1e-6
    assert renamed_fields_of(_Config) == {"max_iterations": "max_steps", "tolerance": "atol"}
    assert hash(config) == hash(_Config(max_steps=3))


def test_both_spellings_at_once_is_an_error():
    with pytest.raises(TypeError, match=r"both 'max_iterations'.*'max_steps'"):
        _Config(max_iterations=3, max_steps=4)


def test_config_helpers_accept_old_names_and_still_validate():
    with pytest.warns(DeprecationWarning):
        assert config_from_dict(_Config, {"max_iterations": 7}).max_steps == 7
    with pytest.warns(DeprecationWarning):
        assert replace_config(_Config(), {"tolerance": 1e-3}).atol == 1e-3
    with pytest.raises(ValueError, match=r"unknown.*max_iter"):
        replace_config(_Config(), {"max_iter": 3})
    with pytest.raises(ValueError, match="max_steps must be"), pytest.warns(DeprecationWarning):
        replace_config(_Config(), {"max_iterations": -1})


def test_gradient_descent_tolerance_spelling():
    with pytest.warns(DeprecationWarning, match="'tolerance'"):
        solver = GradientDescent(jnp.sum, learning_rate=0.1, tolerance=1e-3)
    assert solver.atol == 1e-3


def test_solve_result_old_field_names():
    result = run_solver(
        GradientDescent(lambda x: jnp.sum(x**2), learning_rate=0.25), jnp.ones(2), max_steps=5
    )
    with pytest.warns(DeprecationWarning, match=r"SolveResult.history.*SolveResult.trace"):
        assert result.history is result.trace
    with pytest.warns(DeprecationWarning, match="use SolveResult.num_steps"):
        assert result.iterations is result.num_steps
    with pytest.raises(AttributeError, match="no attribute 'orbitals'"):
        _ = result.orbitals


def test_solve_result_forwards_named_aux_fields_with_a_warning():
    class Aux(tuple):
        _fields = ("orbital_energies",)

        @property
        def orbital_energies(self):
            return self[0]

    result = SolveResult(*(None,) * 8, aux=Aux((jnp.ones(2),)))
    with pytest.warns(DeprecationWarning, match="SolveResult.aux.orbital_energies"):
        assert result.orbital_energies.shape == (2,)


def test_an_aux_type_can_name_its_methods_former_result_fields():
    class Aux(tuple):
        RESULT_ALIASES = {"density": "params"}  # noqa: RUF012

    result = SolveResult(jnp.ones(2), *(None,) * 7, aux=Aux(()))
    with pytest.warns(DeprecationWarning, match="SolveResult.density is deprecated.*params"):
        assert result.density is result.params
