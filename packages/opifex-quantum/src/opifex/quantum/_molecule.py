"""Molecules as JAX pytrees: nuclear coordinates (Bohr) plus static charges and spin."""

import dataclasses
import operator
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from opifex.quantum._elements import atomic_number, element_symbol

BOHR_IN_ANGSTROM = 0.52917721092
"""The Bohr radius in Angstrom (CODATA 2010, the value PySCF uses)."""

MIN_NUCLEAR_DISTANCE = 0.1
"""Closest two nuclei may be, in Bohr; anything nearer is taken to be an input error."""

_BOHR_PER_UNIT = {"angstrom": 1.0 / BOHR_IN_ANGSTROM, "bohr": 1.0}

AtomList = Sequence[tuple[str | int, Sequence[float]]]


def _as_int(value: object, name: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be an integer, got {type(value).__name__} {value!r}"
        ) from None


def _check_spin(nuclear_charge: int, charge: int, multiplicity: int) -> None:
    n_electrons = nuclear_charge - charge
    if n_electrons < 1:
        raise ValueError(
            f"charge={charge} leaves {n_electrons} electrons for a total nuclear charge of "
            f"{nuclear_charge}; a molecule needs at least one electron"
        )
    if multiplicity < 1:
        raise ValueError(f"multiplicity (2S+1) must be at least 1, got {multiplicity}")
    if multiplicity - 1 > n_electrons:
        raise ValueError(
            f"multiplicity={multiplicity} needs {multiplicity - 1} unpaired electrons but the "
            f"molecule has only {n_electrons} electrons"
        )
    if (n_electrons + multiplicity - 1) % 2:
        parity, allowed = ("even", "odd") if n_electrons % 2 == 0 else ("odd", "even")
        raise ValueError(
            f"multiplicity={multiplicity} is impossible with {n_electrons} electrons: an "
            f"{parity} electron count needs an {allowed} multiplicity"
        )


def nuclear_repulsion(coordinates: jax.Array, nuclear_charges: jax.Array) -> jax.Array:
    """``sum_(A<B) Z_A Z_B / |R_A - R_B|`` over the pairs ``A < B`` only (finite gradients).

    Args:
        coordinates: ``(..., n_atoms, 3)`` nuclear positions in Bohr; leading axes batch.
        nuclear_charges: ``(n_atoms,)`` nuclear charges.

    Returns:
        The nuclear repulsion energy in Hartree (0 for one atom), one per batch index.

    Example:
        >>> import jax.numpy as jnp
        >>> float(nuclear_repulsion(jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]]),
        ...                         jnp.array([1.0, 1.0])))
        0.5
    """
    first, second = np.triu_indices(coordinates.shape[-2], k=1)
    charges = jnp.asarray(nuclear_charges, dtype=coordinates.dtype)
    separation = coordinates[..., first, :] - coordinates[..., second, :]
    distance = jnp.sqrt(jnp.sum(separation**2, axis=-1))
    return jnp.sum(charges[first] * charges[second] / distance, axis=-1)


def _is_abstract(value: object) -> bool:
    """A traced or shape-only array (inside ``jit`` / ``vmap`` / ``grad``, or for AOT lowering)."""
    return isinstance(value, jax.core.Tracer | jax.ShapeDtypeStruct)


def _check_min_distance(coordinates: np.ndarray, atomic_numbers: Sequence[int]) -> None:
    """Raise ``ValueError`` if two nuclei are closer than ``MIN_NUCLEAR_DISTANCE`` (Bohr).

    Args:
        coordinates: ``(..., n_atoms, 3)`` positions in Bohr; leading axes are a batch.
        atomic_numbers: the atoms, for the message.

    Example:
        >>> _check_min_distance(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.05]]), (1, 1))
        Traceback (most recent call last):
        ...
        ValueError: atoms 0 (H) and 1 (H) are 0.05 Bohr apart; nuclei must be at least 0.1 ...
    """
    first, second = np.triu_indices(len(atomic_numbers), k=1)
    if first.size == 0:
        return
    distance = np.linalg.norm(coordinates[..., first, :] - coordinates[..., second, :], axis=-1)
    if not np.any(distance < MIN_NUCLEAR_DISTANCE):
        return
    where = np.unravel_index(int(np.argmin(distance)), distance.shape)
    a, b = int(first[where[-1]]), int(second[where[-1]])
    batch = f" (batch index {tuple(int(i) for i in where[:-1])})" if len(where) > 1 else ""
    raise ValueError(
        f"atoms {a} ({element_symbol(atomic_numbers[a])}) and {b} "
        f"({element_symbol(atomic_numbers[b])}) are {distance[where]:.3g} Bohr apart{batch}; "
        f"nuclei must be at least {MIN_NUCLEAR_DISTANCE} Bohr apart"
    )


def _check_coordinates(coordinates: object, atomic_numbers: tuple[int, ...]) -> None:
    """Validate ``Molecule.coordinates``: the shape always, the values when they are concrete."""
    n_atoms = len(atomic_numbers)
    expected = f"(n_atoms, 3) = ({n_atoms}, 3)"
    if _is_abstract(coordinates):
        shape = tuple(coordinates.shape)
    else:
        if coordinates is None or isinstance(coordinates, str | bytes):
            raise TypeError(
                f"coordinates must be an array of shape {expected} in Bohr, got {coordinates!r}"
            )
        try:
            values = np.asarray(coordinates)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"coordinates must be an array of shape {expected} in Bohr, got "
                f"{type(coordinates).__name__} ({err})"
            ) from None
        if values.dtype.kind not in "fiu":
            raise TypeError(
                f"coordinates must be real numbers (Bohr), got dtype {values.dtype} from "
                f"{type(coordinates).__name__}"
            )
        shape = values.shape
    if len(shape) < 2 or shape[-2:] != (n_atoms, 3):
        raise ValueError(
            f"coordinates must have shape {expected} (leading batch axes allowed) for atoms "
            f"{atomic_numbers}, got {shape}"
        )
    if _is_abstract(coordinates):
        return
    if not np.all(np.isfinite(values)):
        bad = np.argwhere(~np.all(np.isfinite(values), axis=-1))[0]
        atom = int(bad[-1])
        raise ValueError(
            f"coordinates must be finite: atom {atom} ({element_symbol(atomic_numbers[atom])}) "
            f"is at {values[tuple(bad)].tolist()}"
        )
    _check_min_distance(values.astype(np.float64), atomic_numbers)


@dataclasses.dataclass(frozen=True, eq=False)
class Molecule:
    """Nuclei, total charge and spin multiplicity of a molecule.

    A pytree whose only leaf is ``coordinates``: ``jax.grad`` of a function of a ``Molecule``
    gives a ``Molecule`` holding the nuclear gradient, and ``jax.vmap`` maps over a leading
    batch axis of ``coordinates``. Build one with :func:`create_molecular_system` (atom
    lists, XYZ) or with the constructor, which checks the same things: known elements, a
    possible charge and multiplicity, and coordinates of shape ``(n_atoms, 3)`` (leading
    batch axes allowed), finite, with no two nuclei closer than ``MIN_NUCLEAR_DISTANCE``.
    When the coordinates are JAX tracers (inside ``jit``, ``vmap``, ``grad``) or
    ``jax.ShapeDtypeStruct``s only their shape is checked, and a ``Molecule`` that JAX
    rebuilds from its leaves (a gradient, ``jax.tree.map``, sentinels or ``None`` leaves) is
    not checked at all. Replace the geometry with
    ``dataclasses.replace(molecule, coordinates=new)`` (checked like the constructor).

    Attributes:
        coordinates: ``(n_atoms, 3)`` nuclear positions in Bohr (NumPy float64 from
            :func:`create_molecular_system`; any real array, or a tracer inside
            transformations).
        atomic_numbers: atomic number of each nucleus (symbols are accepted and converted).
        charge: total charge in units of the elementary charge.
        multiplicity: spin multiplicity ``2S + 1``.

    Example:
        >>> mol = create_molecular_system([("H", (0, 0, 0)), ("H", (0.74, 0, 0))])
        >>> mol.symbols, mol.n_electrons, mol.n_alpha, mol.n_beta
        (('H', 'H'), 2, 1, 1)
        >>> round(float(mol.nuclear_repulsion()), 6)
        0.715104
    """

    coordinates: jax.Array | np.ndarray
    atomic_numbers: tuple[int, ...]
    charge: int = 0
    multiplicity: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.atomic_numbers, str | int) or not isinstance(
            self.atomic_numbers, Sequence
        ):
            raise TypeError(
                f"atomic_numbers must be a sequence of atomic numbers, got {self.atomic_numbers!r}"
            )
        if not self.atomic_numbers:
            raise ValueError("atomic_numbers is empty: a molecule needs at least one atom")
        numbers = tuple(atomic_number(z) for z in self.atomic_numbers)
        charge = _as_int(self.charge, "charge")
        multiplicity = _as_int(self.multiplicity, "multiplicity")
        _check_spin(sum(numbers), charge, multiplicity)
        _check_coordinates(self.coordinates, numbers)
        object.__setattr__(self, "atomic_numbers", numbers)
        object.__setattr__(self, "charge", charge)
        object.__setattr__(self, "multiplicity", multiplicity)

    def _tree_flatten_with_keys(self) -> tuple[tuple, tuple]:
        leaf = ((jax.tree_util.GetAttrKey("coordinates"), self.coordinates),)
        return leaf, (self.atomic_numbers, self.charge, self.multiplicity)

    def _tree_flatten(self) -> tuple[tuple, tuple]:
        return (self.coordinates,), (self.atomic_numbers, self.charge, self.multiplicity)

    @classmethod
    def _tree_unflatten(cls, static: tuple, leaves: tuple) -> "Molecule":
        # JAX rebuilds molecules from anything (gradients, zeros, sentinels, None leaves);
        # the static fields were checked when the flattened molecule was built.
        molecule = object.__new__(cls)
        object.__setattr__(molecule, "coordinates", leaves[0])
        for name, value in zip(("atomic_numbers", "charge", "multiplicity"), static, strict=True):
            object.__setattr__(molecule, name, value)
        return molecule

    @property
    def n_atoms(self) -> int:
        """Number of nuclei."""
        return len(self.atomic_numbers)

    @property
    def symbols(self) -> tuple[str, ...]:
        """Element symbol of each nucleus."""
        return tuple(element_symbol(z) for z in self.atomic_numbers)

    @property
    def nuclear_charges(self) -> np.ndarray:
        """``(n_atoms,)`` float64 nuclear charges ``Z``."""
        return np.asarray(self.atomic_numbers, dtype=np.float64)

    @property
    def n_electrons(self) -> int:
        """Number of electrons, ``sum(Z) - charge``."""
        return sum(self.atomic_numbers) - self.charge

    @property
    def n_alpha(self) -> int:
        """Number of spin-up electrons; ``n_alpha - n_beta == multiplicity - 1``."""
        return (self.n_electrons + self.multiplicity - 1) // 2

    @property
    def n_beta(self) -> int:
        """Number of spin-down electrons."""
        return (self.n_electrons - self.multiplicity + 1) // 2

    def nuclear_repulsion(self) -> jax.Array:
        """Nuclear repulsion energy ``sum_{A<B} Z_A Z_B / R_AB`` in Hartree.

        Only the pairs ``A < B`` are formed, so the gradient is finite everywhere the energy
        is (no masked ``1/0`` on the diagonal). Works under ``jit``, ``grad`` and ``vmap``;
        extra leading axes of ``coordinates`` give a batch of energies. The result has
        JAX's default float type: float64 needs ``jax_enable_x64``, otherwise the sum is
        done in float32 (relative error about 1e-7).

        Returns:
            A JAX scalar (or one value per leading batch index of ``coordinates``).

        Example:
            >>> import jax
            >>> atoms = [("H", (0, 0, 0)), ("H", (0, 0, 1.4))]
            >>> with jax.enable_x64(True):
            ...     h2 = create_molecular_system(atoms, unit="bohr")
            ...     energy = h2.nuclear_repulsion()  # 1 / 1.4
            ...     force = -jax.grad(lambda m: m.nuclear_repulsion())(h2).coordinates
            >>> round(float(energy), 12), round(float(force[1, 2]), 12)  # force = 1 / 1.4**2
            (0.714285714286, 0.510204081633)
        """
        return nuclear_repulsion(jnp.asarray(self.coordinates), self.nuclear_charges)


jax.tree_util.register_pytree_with_keys(
    Molecule,
    Molecule._tree_flatten_with_keys,
    Molecule._tree_unflatten,
    Molecule._tree_flatten,
)


def _unit_scale(unit: object) -> tuple[str, float]:
    key = unit.lower() if isinstance(unit, str) else None
    if key not in _BOHR_PER_UNIT:
        raise ValueError(f"unit must be 'angstrom' or 'bohr', got {unit!r}")
    return key, _BOHR_PER_UNIT[key]


def _parse_atoms(atoms: object) -> tuple[tuple[int, ...], np.ndarray]:
    if isinstance(atoms, str | bytes) or not isinstance(atoms, Sequence):
        raise TypeError(
            "atoms must be a list of (element, (x, y, z)) pairs, an XYZ string or a path to an "
            f".xyz file, got {type(atoms).__name__}"
        )
    if len(atoms) == 0:
        raise ValueError("atoms is empty: a molecule needs at least one atom")
    numbers, rows = [], []
    for i, entry in enumerate(atoms):
        if isinstance(entry, str) or not isinstance(entry, Sequence) or len(entry) != 2:
            raise TypeError(f"atoms[{i}] must be an (element, (x, y, z)) pair, got {entry!r}")
        element, xyz = entry
        try:
            z = atomic_number(element)
        except (TypeError, ValueError) as err:
            raise type(err)(f"atoms[{i}]: {err}") from None
        try:
            row = np.asarray(xyz, dtype=np.float64)
        except (TypeError, ValueError):
            row = None
        if row is None or row.shape != (3,):
            raise ValueError(
                f"atoms[{i}] ({element_symbol(z)}) coordinates must be 3 numbers, got {xyz!r}"
            )
        if not np.all(np.isfinite(row)):
            raise ValueError(
                f"atoms[{i}] ({element_symbol(z)}) coordinates must be finite, got {row.tolist()}"
            )
        numbers.append(z)
        rows.append(row)
    return tuple(numbers), np.stack(rows)


def _parse_xyz(text: str, source: str) -> tuple[list[tuple[str, tuple[float, ...]]], bool]:
    """Atom list of an XYZ text, and whether it had the count and comment lines."""
    lines = list(enumerate(text.splitlines(), start=1))
    while lines and not lines[-1][1].strip():
        lines.pop()
    while lines and not lines[0][1].strip():
        lines.pop(0)
    if not lines:
        raise ValueError(f"{source} contains no atoms")
    first = lines[0][1].split()
    has_header = len(first) == 1 and first[0].lstrip("+").isdigit()
    atom_lines = [(n, line) for n, line in lines[2 if has_header else 0 :] if line.strip()]
    if has_header and int(first[0]) != len(atom_lines):
        raise ValueError(
            f"{source}: the count line says {int(first[0])} atoms but {len(atom_lines)} atom "
            "lines follow"
        )
    atoms = []
    for n, line in atom_lines:
        fields = line.split()
        if len(fields) != 4:
            raise ValueError(f"{source}, line {n}: expected 'El x y z', got {line.strip()!r}")
        try:
            xyz = tuple(float(value) for value in fields[1:])
        except ValueError:
            raise ValueError(
                f"{source}, line {n}: could not read the coordinates of {line.strip()!r} as numbers"
            ) from None
        atoms.append((fields[0], xyz))
    return atoms, has_header


def _xyz_path(atoms: str | os.PathLike) -> Path | None:
    if isinstance(atoms, os.PathLike):
        return Path(atoms)
    candidate = atoms.strip()
    if "\n" not in candidate and (candidate.lower().endswith(".xyz") or Path(candidate).is_file()):
        return Path(candidate)
    return None


def create_molecular_system(
    atoms: AtomList | str | os.PathLike,
    *,
    unit: str = "angstrom",
    charge: int = 0,
    multiplicity: int | None = None,
) -> Molecule:
    """Build and validate a :class:`Molecule`.

    Args:
        atoms: a list of ``(element, (x, y, z))`` pairs (element as symbol or atomic number),
            an XYZ string, or a path to an ``.xyz`` file. XYZ input is either the standard
            format (atom count line, comment line, then ``El x y z`` lines, in Angstrom) or
            bare ``El x y z`` lines.
        unit: ``"angstrom"`` or ``"bohr"`` (any case), the unit of an atom list or of bare
            XYZ lines. Standard XYZ strings and files are always in Angstrom.
        charge: total charge.
        multiplicity: spin multiplicity ``2S + 1``; default 1 for an even electron count and
            2 for an odd one.

    Returns:
        The molecule, with coordinates in Bohr as a NumPy float64 array.

    Raises:
        ValueError: unknown element or unit, no atoms, coordinates that are not three finite
            numbers, nuclei closer than 0.1 Bohr, a charge leaving no electrons, an
            impossible multiplicity, or malformed XYZ input.
        TypeError: ``atoms``, ``charge`` or ``multiplicity`` of the wrong type.
        FileNotFoundError: an ``.xyz`` path that does not exist.

    Example:
        >>> water = create_molecular_system('''3
        ... water
        ... O  0.000  0.000  0.117
        ... H  0.000  0.757 -0.470
        ... H  0.000 -0.757 -0.470''')
        >>> water.symbols, water.n_electrons
        (('O', 'H', 'H'), 10)
        >>> oh = create_molecular_system([(8, (0, 0, 0)), (1, (0, 0, 1.83))], unit="bohr")
        >>> oh.multiplicity, oh.n_alpha, oh.n_beta
        (2, 5, 4)
    """
    unit_key, scale = _unit_scale(unit)
    if isinstance(atoms, str | os.PathLike):
        path = _xyz_path(atoms)
        source = f"XYZ file {str(path)!r}" if path is not None else "XYZ text"
        text = path.read_text() if path is not None else atoms
        atoms, has_header = _parse_xyz(text, source)
        if (has_header or path is not None) and unit_key != "angstrom":
            raise ValueError(
                f"{source} is in Angstrom, got unit={unit!r}; pass bare 'El x y z' lines to "
                "give coordinates in Bohr"
            )
    numbers, coordinates = _parse_atoms(atoms)
    coordinates = coordinates * scale
    _check_min_distance(coordinates, numbers)
    charge = _as_int(charge, "charge")
    if multiplicity is None:
        multiplicity = 1 if (sum(numbers) - charge) % 2 == 0 else 2
    return Molecule(coordinates, numbers, charge, multiplicity)
