"""Regenerate ``opifex/second_order/data/nist_strd.json`` from the NIST StRD ``.dat`` files.

The NIST Statistical Reference Datasets (StRD) for nonlinear regression are public-domain US
government data (NIST Information Technology Laboratory, https://www.itl.nist.gov/div898/strd/):
27 problems, each with its data, a model, two starting points and certified parameter values
and residual sum of squares, computed by NIST in 128-bit arithmetic. Download the 27 ``.dat``
files into one folder (the file names are the problem names, e.g. ``MGH09.dat``) and run from
the workspace root::

    uv run python packages/opifex-second-order/scripts/generate_nist_data.py FOLDER

Each ``.dat`` file states on its line 5-8 which lines hold the starting values, the certified
values and the data; this script reads exactly those lines. Numbers are parsed from their
decimal text by ``float`` (the nearest float64) and written with Python's shortest round-trip
``repr``, so the JSON holds the same float64 values. The model formula is kept verbatim as
text: the models themselves are written in JAX in ``_nist.py``, and a test checks them
against this text. The stated degrees of freedom are not kept: they are the number of
observations less the number of parameters, except in Rat43's file, which says 9 for 15 - 4
(its residual standard deviation is computed with 11).
"""

import argparse
import json
import re
import sys
from pathlib import Path

# NIST's order: lower, average, then higher difficulty
LOWER = ("Misra1a", "Chwirut2", "Chwirut1", "Lanczos3", "Gauss1", "Gauss2", "DanWood", "Misra1b")
AVERAGE = ("Kirby2", "Hahn1", "Nelson", "MGH17", "Lanczos1", "Lanczos2", "Gauss3", "Misra1c")
AVERAGE += ("Misra1d", "Roszman1", "ENSO")
HIGHER = ("MGH09", "Thurber", "BoxBOD", "Rat42", "MGH10", "Eckerle4", "Rat43", "Bennett5")
NAMES = LOWER + AVERAGE + HIGHER
OUT = Path(__file__).resolve().parents[1] / "src" / "opifex" / "second_order" / "data"
SOURCE = (
    "NIST Statistical Reference Datasets (StRD), nonlinear regression, NIST Information"
    " Technology Laboratory; public-domain US government data"
)
_LINES = re.compile(r"\(lines\s+(\d+)\s+to\s+(\d+)\)")


def _line_range(lines: list[str], label: str) -> range:
    """The 0-based line range that the header line starting with ``label`` announces."""
    for line in lines[:12]:
        found = _LINES.search(line)
        if found and line.strip().startswith(label):
            first, last = map(int, found.groups())
            return range(first - 1, last)
    raise ValueError(f"no {label!r} line in the file header")


def _header_value(lines: list[str], label: str) -> str:
    for line in lines:
        if line.strip().startswith(label):
            return line.split(":", 1)[1].strip()
    raise ValueError(f"no {label!r} line")


def _formula(lines: list[str]) -> str:
    """The model's text: the lines after ``N Parameters ...`` up to the starting values."""
    start = next(i for i, line in enumerate(lines) if line.startswith("Model:"))
    body = []
    for line in lines[start + 2 :]:
        if "Starting" in line and "Certified" in line:
            break
        if line.strip():
            body.append(line.strip())
    return " ".join(body)


def parse(path: Path) -> dict:
    """One ``.dat`` file as a JSON-ready dict."""
    lines = path.read_text().splitlines()
    starts, certified, data = (
        _line_range(lines, label) for label in ("Starting Values", "Certified Values", "Data")
    )
    rows = [lines[i].split("=")[1].split() for i in starts]
    if any(len(row) != 4 for row in rows):
        raise ValueError(f"{path.name}: expected start 1, start 2, value, std dev per parameter")
    numbers = {
        label: float(_header_value(lines[certified.start :], label))
        for label in ("Residual Sum of Squares", "Residual Standard Deviation")
    }
    num_obs = int(_header_value(lines[certified.start :], "Number of Observations"))
    table = [[float(v) for v in lines[i].split()] for i in data]
    if len(table) != num_obs:
        raise ValueError(f"{path.name}: {len(table)} data rows, header says {num_obs}")
    columns = list(zip(*table, strict=True))
    if not _header_value(lines, "Data:").startswith("1 Response"):
        raise ValueError(f"{path.name}: expected one response variable")
    difficulty = next(
        line.split()[0] for line in lines[:40] if line.strip().endswith("Level of Difficulty")
    )
    return {
        "difficulty": difficulty.strip().lower(),
        "formula": _formula(lines),
        "num_observations": num_obs,
        "starts": [[float(row[0]) for row in rows], [float(row[1]) for row in rows]],
        "certified_params": [float(row[2]) for row in rows],
        "certified_std_devs": [float(row[3]) for row in rows],
        "certified_rss": numbers["Residual Sum of Squares"],
        "certified_residual_sd": numbers["Residual Standard Deviation"],
        "y": list(columns[0]),
        "x": [list(c) for c in columns[1:]],
    }


def main(argv: list[str]) -> None:
    """Parse the 27 files in ``argv[0]`` and write the JSON (NIST's order)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder holding the 27 NIST StRD .dat files")
    folder = parser.parse_args(argv).folder
    problems = {name: parse(folder / f"{name}.dat") for name in NAMES}
    OUT.mkdir(parents=True, exist_ok=True)
    payload = {"source": SOURCE, "problems": problems}
    path = OUT / "nist_strd.json"
    path.write_text(json.dumps(payload, indent=None, separators=(",", ":")) + "\n")
    print(path, len(problems), "problems")


if __name__ == "__main__":
    main(sys.argv[1:])
