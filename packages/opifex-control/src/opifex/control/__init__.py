"""Differentiable control: dynamics with diffrax, system identification, MPC, safety filters."""
