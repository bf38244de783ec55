"""Element symbols, atomic numbers and ground-state configurations, hydrogen to krypton."""

import operator

ELEMENT_SYMBOLS: tuple[str, ...] = (
    "H", "He",
    "Li", "Be", "B", "C", "N", "O", "F", "Ne",
    "Na", "Mg", "Al", "Si", "P", "S", "Cl", "Ar",
    "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn",
    "Ga", "Ge", "As", "Se", "Br", "Kr",
)  # fmt: skip
"""Symbols of elements 1 (H) to 36 (Kr); ``ELEMENT_SYMBOLS[Z - 1]`` is element ``Z``."""

MAX_ATOMIC_NUMBER = len(ELEMENT_SYMBOLS)

_NUMBER_OF_SYMBOL = {symbol.lower(): z for z, symbol in enumerate(ELEMENT_SYMBOLS, start=1)}


def atomic_number(element: str | int) -> int:
    """The atomic number of an element given by symbol (any case) or by number.

    Args:
        element: a symbol such as ``"O"``, ``"cl"`` or ``"8"``, or an integer from 1 to 36.

    Returns:
        The atomic number.

    Raises:
        ValueError: if the element is not one of H..Kr.
        TypeError: if ``element`` is neither a string nor an integer.

    Example:
        >>> atomic_number("he"), atomic_number("Kr"), atomic_number(8)
        (2, 36, 8)
    """
    if isinstance(element, str):
        key = element.strip()
        if key.isdigit():
            return atomic_number(int(key))
        if key.lower() in _NUMBER_OF_SYMBOL:
            return _NUMBER_OF_SYMBOL[key.lower()]
        raise ValueError(
            f"unknown element {element!r}: expected a symbol from H to Kr "
            f"(atomic numbers 1..{MAX_ATOMIC_NUMBER})"
        )
    if isinstance(element, bool):
        raise TypeError(f"element must be a symbol or an atomic number, got {element!r}")
    try:
        z = operator.index(element)
    except TypeError:
        raise TypeError(
            f"element must be a symbol or an atomic number, got {type(element).__name__} "
            f"{element!r}"
        ) from None
    if not 1 <= z <= MAX_ATOMIC_NUMBER:
        raise ValueError(
            f"unknown element with atomic number {z}: supported are 1 (H) to "
            f"{MAX_ATOMIC_NUMBER} (Kr)"
        )
    return z


def element_symbol(z: int) -> str:
    """The symbol of the element with atomic number ``z``.

    Args:
        z: atomic number (or a symbol, which is normalised).

    Returns:
        The symbol with standard capitalisation.

    Raises:
        ValueError: if the element is not one of H..Kr.

    Example:
        >>> element_symbol(17), element_symbol("FE")
        ('Cl', 'Fe')
    """
    return ELEMENT_SYMBOLS[atomic_number(z) - 1]


# Subshells (n, l) in the order the aufbau (Madelung) rule fills them, up to krypton.
_AUFBAU_ORDER = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (4, 0), (3, 2), (4, 1))
# Atoms whose ground state breaks the Madelung rule (up to Kr): one 4s electron moves to 3d.
_ONE_4S_ELECTRON = (24, 29)  # Cr [Ar] 3d5 4s1, Cu [Ar] 3d10 4s1


def ground_state_configuration(element: str | int) -> tuple[tuple[int, int, int], ...]:
    """The occupied subshells of the neutral atom's ground state, ``(n, l, electrons)``.

    The experimental ground configurations (NIST), in filling order: the Madelung rule, except
    Cr ``[Ar] 3d5 4s1`` and Cu ``[Ar] 3d10 4s1``. These are PySCF's
    ``pyscf.data.elements.CONFIGURATION``; PySCF's own atomic guesses use its
    ``NRSRHF_CONFIGURATION`` instead (the lowest spherically averaged Hartree-Fock state), which
    differs for Sc (4s2 4p1) and Cr to Ni (4s2 3d4, then 4s0 3d7 to 3d10).

    Args:
        element: a symbol or atomic number, H to Kr.

    Returns:
        ``(n, l, electrons)`` for each occupied subshell.

    Raises:
        ValueError: if the element is not one of H..Kr.

    Example:
        >>> ground_state_configuration("Cr")[-2:]   # ... 4s1 3d5
        ((4, 0, 1), (3, 2, 5))
    """
    z = atomic_number(element)
    left, configuration = z, []
    for n, l in _AUFBAU_ORDER:  # noqa: E741
        electrons = min(left, 2 * (2 * l + 1))
        if electrons:
            configuration.append((n, l, electrons))
        left -= electrons
    if z in _ONE_4S_ELECTRON:  # 4s2 3d(k) -> 4s1 3d(k+1)
        shift = {(4, 0): -1, (3, 2): 1}
        configuration = [(n, l, e + shift.get((n, l), 0)) for n, l, e in configuration]  # noqa: E741
    return tuple(configuration)
