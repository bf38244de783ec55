"""Regenerate the basis-set data shipped in ``opifex/quantum/basis_data`` from basis-set-exchange.

Run from the workspace root (basis-set-exchange is a dev dependency)::

    uv run python packages/opifex-quantum/scripts/generate_basis_data.py

Each file maps an atomic number to a list of shells ``[l, exponents, coefficients]``. Pople
``SP`` shells are split into an s and a p shell with shared exponents, and a general contraction
(several contractions of one primitive set: ANO-RCC-MB, cc-pVXZ) into one shell per contraction,
in order, each without the primitives whose coefficient in it is zero (cc-pVXZ's uncontracted
functions are stored as columns of zeros and a one). Coefficients are the published
contraction coefficients of normalised primitives, exactly as basis-set-exchange gives them.
Every element from H to Kr that basis-set-exchange defines for a set is written, all-electron:
an element that would need an effective core potential is left out (none of these sets uses one
below Rb).
"""

import json
from pathlib import Path

import basis_set_exchange

BASIS_SETS = {
    "sto-3g": "STO-3G",
    "6-31g": "6-31G",
    "6-31g*": "6-31G*",
    "6-31g**": "6-31G**",
    "cc-pvdz": "cc-pVDZ",
    "cc-pvtz": "cc-pVTZ",
    "def2-svp": "def2-SVP",
    "def2-tzvp": "def2-TZVP",
    "ano-rcc-mb": "ANO-RCC-MB",  # the minimal ANO-RCC set: atomic densities of the minao guess
    # auxiliary (density-fitting) sets for Coulomb and exchange; basis-set-exchange has no
    # cc-pVDZ-JKFIT (PySCF's file of that name is another set), so only cc-pVTZ-JKFIT ships
    "def2-universal-jkfit": "def2-universal-JKFIT",
    "cc-pvtz-jkfit": "cc-pVTZ-JKFIT",
}
ELEMENTS = list(range(1, 37))  # H to Kr
OUT = Path(__file__).resolve().parents[1] / "src" / "opifex" / "quantum" / "basis_data"


def _contraction(momentum: int, exponents: list[str], row: list[str]) -> list:
    pairs = [(float(a), float(c)) for a, c in zip(exponents, row, strict=True) if float(c) != 0.0]
    return [momentum, [a for a, _ in pairs], [c for _, c in pairs]]


def _shells(element: dict) -> list:
    shells = []
    for shell in element["electron_shells"]:
        momenta = shell["angular_momentum"]
        rows = shell["coefficients"]
        if len(momenta) == 1:  # one or several (general) contractions of one angular momentum
            shells += [_contraction(momenta[0], shell["exponents"], row) for row in rows]
        else:  # SP: one row per angular momentum
            pairs = zip(momenta, rows, strict=True)
            shells += [_contraction(m, shell["exponents"], row) for m, row in pairs]
    return shells


def elements(bse_name: str) -> list[int]:
    """The elements from H to Kr that basis-set-exchange defines for a set, all-electron."""
    data = basis_set_exchange.get_basis(bse_name, header=False)
    return [
        int(z)
        for z, element in data["elements"].items()
        if int(z) in ELEMENTS and "ecp_potentials" not in element
    ]


def regenerate(key: str) -> dict:
    """The payload of one file: ``{"name", "source", "elements": {Z: shells}}``."""
    bse_name = BASIS_SETS[key]
    data = basis_set_exchange.get_basis(bse_name, elements=elements(bse_name), header=False)
    return {
        "name": data["name"],
        "source": f"basis-set-exchange {basis_set_exchange.version()}",
        "elements": {z: _shells(e) for z, e in sorted(data["elements"].items(), key=_by_z)},
    }


def _by_z(item: tuple[str, dict]) -> int:
    return int(item[0])


def main() -> None:
    """Write one JSON file per basis set (``*`` spelled ``star`` in the file name)."""
    OUT.mkdir(parents=True, exist_ok=True)
    for key, bse_name in BASIS_SETS.items():
        payload = regenerate(key)
        path = OUT / f"{key.replace('*', 'star')}.json"
        path.write_text(json.dumps(payload, indent=None, separators=(",", ":")) + "\n")
        skipped = sorted(set(ELEMENTS) - set(map(int, payload["elements"])))
        count = len(payload["elements"])
        print(f"{path.name}: {count} elements ({bse_name}); none for Z={skipped}")


if __name__ == "__main__":
    main()
