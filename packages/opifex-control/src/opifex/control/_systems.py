"""Built-in systems: pendulum, cart-pole, double integrator, planar quadrotor, cruise control.

Angles are measured from the upright position (``theta = 0`` up, ``pi`` hanging down), so that
a swing-up drives the angle to zero. Every model is a ``Dynamics``; parameters are SI units.
"""

from __future__ import annotations

import jax.numpy as jnp

from opifex.control._dynamics import Dynamics
from opifex.core import check_int_at_least

GRAVITY = 9.81


def _pendulum_rhs(x, u, t, p):
    theta, omega = x[0], x[1]
    inertia = p["mass"] * p["length"] ** 2
    alpha = (
        p["gravity"] / p["length"] * jnp.sin(theta)
        - p["damping"] * omega / inertia
        + u[0] / inertia
    )
    return jnp.stack([omega, alpha])


def pendulum(max_torque: float = 2.0, **params: float) -> Dynamics:
    """A damped pendulum driven by a torque: state ``(theta, omega)``, control ``(torque,)``.

    ``ml^2 theta'' = m g l sin(theta) - b theta' + u`` with ``theta = 0`` upright.

    Args:
        max_torque: the torque bound ``|u| <= max_torque`` (N m); below ``m g l`` a swing-up
            must pump energy.
        **params: ``mass`` (1 kg), ``length`` (1 m), ``damping`` (0.1 N m s), ``gravity`` (9.81).

    Example:
        >>> import jax.numpy as jnp
        >>> pendulum()(jnp.array([jnp.pi / 2, 0.0]), jnp.zeros(1)).tolist()   # falls at g/l
        [0.0, 9.8100004196167]
    """
    base = Dynamics(
        _pendulum_rhs,
        2,
        1,
        {"mass": 1.0, "length": 1.0, "damping": 0.1, "gravity": GRAVITY},
        (-max_torque,),
        (max_torque,),
        "pendulum",
        ("theta", "omega"),
    )
    return base.with_params(**params)


def _cartpole_rhs(x, u, t, p):
    theta, velocity, omega = x[1], x[2], x[3]
    total = p["cart_mass"] + p["pole_mass"]
    half = p["pole_length"]
    sin, cos = jnp.sin(theta), jnp.cos(theta)
    temp = (u[0] + p["pole_mass"] * half * omega**2 * sin) / total
    alpha = (p["gravity"] * sin - cos * temp) / (
        half * (4.0 / 3.0 - p["pole_mass"] * cos**2 / total)
    )
    accel = temp - p["pole_mass"] * half * alpha * cos / total
    return jnp.stack([velocity, omega, accel, alpha])


def cartpole(max_force: float = 10.0, **params: float) -> Dynamics:
    """A cart-pole: state ``(position, theta, velocity, omega)``, control ``(force,)``.

    The classic equations (a uniform pole on a frictionless cart; ``pole_length`` is the
    distance from the pivot to the pole's centre of mass) with ``theta = 0`` upright.

    Args:
        max_force: the force bound ``|u| <= max_force`` (N).
        **params: ``cart_mass`` (1 kg), ``pole_mass`` (0.1 kg), ``pole_length`` (0.5 m),
            ``gravity`` (9.81).

    Example:
        >>> import jax.numpy as jnp
        >>> cartpole()(jnp.zeros(4), jnp.array([1.1])).tolist()[2] > 0   # pushed right
        True
    """
    base = Dynamics(
        _cartpole_rhs,
        4,
        1,
        {"cart_mass": 1.0, "pole_mass": 0.1, "pole_length": 0.5, "gravity": GRAVITY},
        (-max_force,),
        (max_force,),
        "cartpole",
        ("position", "theta", "velocity", "omega"),
    )
    return base.with_params(**params)


def double_integrator(dims: int = 1, max_accel: float | None = None) -> Dynamics:
    """Point masses ``x'' = u`` in ``dims`` dimensions: state ``(positions, velocities)``.

    Args:
        dims: the number of dimensions (>= 1).
        max_accel: ``|u_i| <= max_accel`` per axis, or ``None`` for no bound.

    Example:
        >>> import jax.numpy as jnp
        >>> double_integrator()(jnp.array([0.0, 2.0]), jnp.array([3.0])).tolist()
        [2.0, 3.0]
    """
    check_int_at_least(dims, 1, "dims")
    bound = None if max_accel is None else (max_accel,) * dims

    def rhs(x, u, t, p):
        return jnp.concatenate([x[dims:], u])

    names = tuple(f"p{i}" for i in range(dims)) + tuple(f"v{i}" for i in range(dims))
    return Dynamics(
        rhs,
        2 * dims,
        dims,
        {},
        None if bound is None else tuple(-b for b in bound),
        bound,
        "double_integrator",
        names,
    )


def _quadrotor_rhs(x, u, t, p):
    phi = x[2]
    thrust = u[0] + u[1]
    ax = -thrust * jnp.sin(phi) / p["mass"]
    ay = thrust * jnp.cos(phi) / p["mass"] - p["gravity"]
    alpha = p["arm"] * (u[1] - u[0]) / p["inertia"]  # right minus left: phi counter-clockwise
    return jnp.concatenate([x[3:], jnp.stack([ax, ay, alpha])])


def planar_quadrotor(max_thrust: float = 10.0, **params: float) -> Dynamics:
    """A planar quadrotor: state ``(x, y, phi, vx, vy, omega)``, control ``(left, right)`` thrusts.

    ``x`` right, ``y`` up, ``phi`` counter-clockwise; the rotors sit at ``-arm`` (left) and
    ``+arm`` (right) along the body axis, so a stronger right rotor turns the body left.

    Args:
        max_thrust: each rotor's thrust lies in ``[0, max_thrust]`` (N).
        **params: ``mass`` (0.486 kg), ``arm`` (0.25 m), ``inertia`` (0.00383 kg m^2),
            ``gravity`` (9.81); the values of Tedrake's Underactuated Robotics notes.

    Example:
        >>> import jax.numpy as jnp
        >>> quad = planar_quadrotor()
        >>> hover = quad.params["mass"] * quad.params["gravity"] / 2
        >>> float(jnp.abs(quad(jnp.zeros(6), jnp.array([hover, hover]))).max()) < 1e-6
        True
    """
    base = Dynamics(
        _quadrotor_rhs,
        6,
        2,
        {"mass": 0.486, "arm": 0.25, "inertia": 0.00383, "gravity": GRAVITY},
        (0.0, 0.0),
        (max_thrust, max_thrust),
        "planar_quadrotor",
        ("x", "y", "phi", "vx", "vy", "omega"),
    )
    return base.with_params(**params)


def _cruise_rhs(x, u, t, p):
    speed, lead_speed = x[0], x[2]
    drag = p["f0"] + p["f1"] * speed + p["f2"] * speed**2
    return jnp.stack([(u[0] - drag) / p["mass"], lead_speed - speed, p["lead_accel"]])


def adaptive_cruise_control(**params: float) -> Dynamics:
    """Car following: state ``(speed, gap, lead_speed)``, control ``(wheel_force,)``.

    ``m v' = u - (f0 + f1 v + f2 v^2)``, ``gap' = v_lead - v``, ``v_lead' = lead_accel``; the
    parameters of Ames et al., "Control barrier function based quadratic programs with
    application to adaptive cruise control" (CDC 2014): m = 1650 kg, f0 = 0.1 N,
    f1 = 5 N s/m, f2 = 0.25 N s^2/m^2, and ``|u| <= 0.3 m g``.

    Args:
        **params: ``mass``, ``f0``, ``f1``, ``f2``, ``gravity`` and ``lead_accel`` (0: the
            lead car keeps its speed, the model's assumption).

    Example:
        >>> import jax.numpy as jnp
        >>> acc = adaptive_cruise_control()
        >>> v = 20.0
        >>> drag = 0.1 + 5 * v + 0.25 * v**2       # the force that holds speed v
        >>> acc(jnp.array([v, 50.0, v]), jnp.array([drag])).tolist()
        [0.0, 0.0, 0.0]
    """
    defaults = {
        "mass": 1650.0,
        "f0": 0.1,
        "f1": 5.0,
        "f2": 0.25,
        "gravity": GRAVITY,
        "lead_accel": 0.0,
    }
    bound = 0.3 * params.get("mass", defaults["mass"]) * params.get("gravity", GRAVITY)
    base = Dynamics(
        _cruise_rhs,
        3,
        1,
        defaults,
        (-bound,),
        (bound,),
        "adaptive_cruise_control",
        ("speed", "gap", "lead_speed"),
    )
    return base.with_params(**params)


def wrap_angle(theta):
    """Map angles to ``[-pi, pi)``.

    Example:
        >>> round(float(wrap_angle(3 * jnp.pi / 2)), 4)
        -1.5708
    """
    return (theta + jnp.pi) % (2 * jnp.pi) - jnp.pi
