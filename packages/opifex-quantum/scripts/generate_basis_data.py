"""Regenerate the basis-set data shipped in ``opifex/quantum/basis_data`` from basis-set-exchange.

Run from the workspace root (basis-set-exchange is a dev dependency)::

    uv run python packages/opifex-quantum/scripts/generate_basis_data.py

Each file maps an atomic number to a list of shells ``[l, exponents, coefficients]``; Pople
``SP`` shells are split into an s and a p shell with shared exponents, and a general contraction
(ANO-RCC-MB: several contractions of one primitive set) into one shell per contraction, in
order. Coefficients are the
published contraction coefficients of normalised primitives, exactly as basis-set-exchange
gives them.
"""

import json
from pathlib import Path

import basis_set_exchange

BASIS_SETS = {
    "sto-3g": "STO-3G",
    "6-31g": "6-31G",
    "6-31g*": "6-31G*",
    "6-31g**": "6-31G**",
    "ano-rcc-mb": "ANO-RCC-MB",  # the minimal ANO-RCC set: atomic densities of the minao guess
}
ELEMENTS = list(range(1, 19))  # H to Ar
OUT = Path(__file__).resolve().parents[1] / "src" / "opifex" / "quantum" / "basis_data"


def _shells(element: dict) -> list:
    shells = []
    for shell in element["electron_shells"]:
        exponents = [float(a) for a in shell["exponents"]]
        momenta = shell["angular_momentum"]
        rows = shell["coefficients"]
        if len(momenta) == 1:
            shells += [[momenta[0], exponents, [float(c) for c in row]] for row in rows]
        else:
            pairs = zip(momenta, rows, strict=True)
            shells += [[momentum, exponents, [float(c) for c in row]] for momentum, row in pairs]
    return shells


def main() -> None:
    """Write one JSON file per basis set (``*`` spelled ``star`` in the file name)."""
    OUT.mkdir(parents=True, exist_ok=True)
    for key, bse_name in BASIS_SETS.items():
        data = basis_set_exchange.get_basis(bse_name, elements=ELEMENTS, header=False)
        payload = {
            "name": data["name"],
            "source": f"basis-set-exchange {basis_set_exchange.version()}",
            "elements": {z: _shells(e) for z, e in data["elements"].items()},
        }
        path = OUT / f"{key.replace('*', 'star')}.json"
        path.write_text(json.dumps(payload, indent=None, separators=(",", ":")) + "\n")
        print(path.name, len(payload["elements"]), "elements")


if __name__ == "__main__":
    main()
