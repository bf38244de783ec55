"""opifex.quantum: differentiable Hartree-Fock (RHF / UHF) with Gaussian basis sets in JAX.

Build a ``Molecule`` (``create_molecular_system`` or ``molecule_from_name``), then
``run_scf(molecule, "6-31g")``: integrals (McMurchie-Davidson, 8-fold ERI symmetry, blocked
and Schwarz-screened for larger bases), a MINAO guess (projected atomic natural orbitals; SAD
and core guesses on request), and a jit-compiled SCF solver with DIIS / ADIIS / EDIIS, level
shifting, damping and an optional retry (off unless ``SCFConfig`` enables it), driven by
``opifex.core.run_solver``. It returns ``opifex.core``'s ``SolveResult``: ``value`` (the total
energy), ``params`` (the density), ``num_steps`` (SCF cycles), ``converged`` / ``status``,
``trace`` and ``aux`` (an ``SCFOutputs``: energy components and orbitals). ``result.value`` is
differentiable in the nuclear coordinates through the converged SCF (the driver's implicit
adjoint), so ``nuclear_gradient`` is ``jax.grad`` of ``scf_energy``.
``make_energy_fn`` exports the energy as a plain function of orbital coefficients or densities
for outside optimisers. Everything runs in float64: call
``jax.config.update("jax_enable_x64", True)`` first.
"""

from opifex.quantum._basis import (
    BasisSet,
    Shell,
    basis_elements,
    basis_set_data,
    build_basis,
    canonical_basis_name,
    known_basis_sets,
)
from opifex.quantum._density_fitting import DensityFittedERI
from opifex.quantum._direct import DirectERI
from opifex.quantum._elements import ELEMENT_SYMBOLS, atomic_number, element_symbol
from opifex.quantum._energy_components import EnergyComponents
from opifex.quantum._energy_function import EnergyFunction, make_energy_fn
from opifex.quantum._eri_supermatrix import ERISupermatrix
from opifex.quantum._fock import coulomb_matrix, exchange_matrix
from opifex.quantum._geometries import known_molecules, molecule_from_name
from opifex.quantum._guess import atomic_density, superposition_of_atomic_densities
from opifex.quantum._integrals import compute_integrals
from opifex.quantum._integrals_types import Integrals
from opifex.quantum._minao import minao_guess, projected_ano_density
from opifex.quantum._molecule import (
    BOHR_IN_ANGSTROM,
    MIN_NUCLEAR_DISTANCE,
    Molecule,
    create_molecular_system,
)
from opifex.quantum._projector import aufbau_density
from opifex.quantum._pyscf import to_pyscf
from opifex.quantum._rhf import rhf_energy, rhf_energy_components, rhf_fock, run_rhf
from opifex.quantum._scf import (
    molecular_integrals,
    nuclear_gradient,
    resolve_method,
    run_scf,
    scf_energy,
)
from opifex.quantum._scf_config import FORCE_CONV_TOL_GRAD, SCFConfig
from opifex.quantum._scf_solver import SCFOutputs, scf_tolerance
from opifex.quantum._uhf import run_uhf, uhf_energy, uhf_energy_components, uhf_fock

__all__ = [
    "BOHR_IN_ANGSTROM",
    "ELEMENT_SYMBOLS",
    "FORCE_CONV_TOL_GRAD",
    "MIN_NUCLEAR_DISTANCE",
    "BasisSet",
    "DensityFittedERI",
    "DirectERI",
    "ERISupermatrix",
    "EnergyComponents",
    "EnergyFunction",
    "Integrals",
    "Molecule",
    "SCFConfig",
    "SCFOutputs",
    "Shell",
    "atomic_density",
    "atomic_number",
    "aufbau_density",
    "basis_elements",
    "basis_set_data",
    "build_basis",
    "canonical_basis_name",
    "compute_integrals",
    "coulomb_matrix",
    "create_molecular_system",
    "element_symbol",
    "exchange_matrix",
    "known_basis_sets",
    "known_molecules",
    "make_energy_fn",
    "minao_guess",
    "molecular_integrals",
    "molecule_from_name",
    "nuclear_gradient",
    "projected_ano_density",
    "resolve_method",
    "rhf_energy",
    "rhf_energy_components",
    "rhf_fock",
    "run_rhf",
    "run_scf",
    "run_uhf",
    "scf_energy",
    "scf_tolerance",
    "superposition_of_atomic_densities",
    "to_pyscf",
    "uhf_energy",
    "uhf_energy_components",
    "uhf_fock",
]
