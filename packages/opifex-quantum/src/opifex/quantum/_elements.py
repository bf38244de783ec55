"""Element symbols and atomic numbers, hydrogen to krypton."""

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
