"""Release rules for every workspace member, checked in the sources and in built distributions.

Usage (standard library only, Python >= 3.11; run from anywhere):

    python .ci/check_dists.py                    # the pyproject.toml files and sources
    python .ci/check_dists.py DIR                # ... and every member's wheel in DIR
    python .ci/check_dists.py --release DIR      # ... DIR is a release: a wheel and an sdist
                                                 # of each publishable member, nothing else
    python .ci/check_dists.py --publishable      # print the names of the publishable members

The rules (CONTRIBUTING.md, "Releases"):

* A member *has code* when its package under ``src/opifex/`` holds a module other than
  ``__init__.py``, or an ``__init__.py`` with more than a docstring. A member without code
  carries the classifier ``Private :: Do Not Upload`` (the package index refuses the upload)
  and is built into no release; a member with code does not carry it. No publishable member
  depends on an unpublishable one.
* Every member is ``license = "Apache-2.0"`` with ``license-files = ["LICENSE"]``, a byte-for-byte
  copy of the repository's LICENSE; every wheel has it in ``*.dist-info/licenses/`` and every
  sdist at its top.
* Every member with code ships ``py.typed``.
* Every member has the same ``[project.urls]`` Homepage, Repository, Issues and Changelog, and a
  Documentation URL that is a page of the docs site (``docs/<page>.md``).
* A dependency on another member is bounded on both sides (``opifex-core>=0.1,<0.2``) and admits
  that member's current version.

Exit status 1 with one line per broken rule, 0 with a summary line otherwise.
"""

from __future__ import annotations

import argparse
import ast
import email.parser
import pathlib
import re
import sys
import tarfile
import tomllib
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
PRIVATE = "Private :: Do Not Upload"
URL_KEYS = ("Homepage", "Documentation", "Repository", "Issues", "Changelog")
DOCS_SITE = "https://opifex.github.io/opifex/"


class Member:
    """One workspace member: its pyproject.toml, its package directory, and what follows."""

    def __init__(self, directory: pathlib.Path):
        self.directory = directory
        self.project = tomllib.loads((directory / "pyproject.toml").read_text())["project"]
        self.name = normalize(self.project["name"])
        packages = sorted(p for p in (directory / "src" / "opifex").iterdir() if p.is_dir())
        packages = [p for p in packages if p.name != "__pycache__"]
        if len(packages) != 1:
            raise SystemExit(f"{directory}: expected one package under src/opifex/, not {packages}")
        self.package = packages[0]
        self.private = PRIVATE in self.project.get("classifiers", [])
        self.has_code = has_code(self.package)

    @property
    def requirements(self) -> list[str]:
        """The published requirements: dependencies and every extra's."""
        extras = self.project.get("optional-dependencies", {}).values()
        return [*self.project.get("dependencies", []), *(r for reqs in extras for r in reqs)]


def normalize(name: str) -> str:
    """A distribution name in normal form (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def has_code(package: pathlib.Path) -> bool:
    """Whether the package holds more than an ``__init__.py`` with a docstring."""
    modules = [p for p in package.rglob("*.py") if "__pycache__" not in p.parts]
    if any(p != package / "__init__.py" for p in modules):
        return True
    if not modules:
        return False
    body = ast.parse(modules[0].read_text()).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    return bool(body)


def members() -> list[Member]:
    """Every workspace member (packages/*, apps/*), by name."""
    found = [*ROOT.glob("packages/*/pyproject.toml"), *ROOT.glob("apps/*/pyproject.toml")]
    return sorted((Member(p.parent) for p in found), key=lambda m: m.name)


def version_tuple(text: str) -> tuple[int, ...]:
    """``"0.1.0"`` -> ``(0, 1, 0)`` (release segment only; enough for the bounds used here)."""
    return tuple(int(part) for part in re.match(r"\d+(\.\d+)*", text).group(0).split("."))


def admits(specifiers: str, version: str) -> bool:
    """Whether a comma-separated ``>=`` / ``<`` specifier set admits a version."""
    have = version_tuple(version)
    for spec in filter(None, (s.strip() for s in specifiers.split(","))):
        op, bound = re.fullmatch(r"(>=|<)\s*(\S+)", spec).groups()
        bound_tuple = version_tuple(bound)
        width = max(len(have), len(bound_tuple))
        a = have + (0,) * (width - len(have))
        b = bound_tuple + (0,) * (width - len(bound_tuple))
        if (op == ">=" and a < b) or (op == "<" and a >= b):
            return False
    return True


def check_sources(all_members: list[Member]) -> list[str]:
    """The rules above, on the pyproject.toml files and the source trees."""
    errors = []
    by_name = {m.name: m for m in all_members}
    license_text = (ROOT / "LICENSE").read_bytes()
    shared_urls = None
    for m in all_members:
        where = f"{m.directory.relative_to(ROOT)}/pyproject.toml"
        if m.has_code and m.private:
            errors.append(f"{where}: {m.name} has code but is marked '{PRIVATE}'")
        if not m.has_code and not m.private:
            errors.append(
                f"{where}: {m.name} has no code yet; it must carry the classifier '{PRIVATE}'"
            )
        for requirement in m.requirements:
            match = re.match(r"([A-Za-z0-9._-]+)\s*(\[[^\]]*\])?\s*([^;]*)", requirement)
            other = by_name.get(normalize(match.group(1)))
            if other is None:
                continue
            if other.private and not m.private:
                errors.append(
                    f"{where}: {m.name} is published but depends on {other.name}, which is not"
                )
            specifiers = match.group(3).strip()
            if ">=" not in specifiers or "<" not in specifiers.replace("<=", ""):
                errors.append(
                    f"{where}: '{requirement}' needs a lower and an upper bound "
                    f"(e.g. {other.name}>=0.1,<0.2)"
                )
            elif not admits(specifiers, other.project["version"]):
                errors.append(
                    f"{where}: '{requirement}' excludes {other.name} {other.project['version']}"
                )
        if m.project.get("license") != "Apache-2.0":
            errors.append(f'{where}: license must be "Apache-2.0"')
        if m.project.get("license-files") != ["LICENSE"]:
            errors.append(f'{where}: license-files must be ["LICENSE"]')
        copy = m.directory / "LICENSE"
        if not copy.is_file() or copy.read_bytes() != license_text:
            errors.append(f"{copy.relative_to(ROOT)} is missing or differs from LICENSE")
        if m.has_code and not (m.package / "py.typed").is_file():
            errors.append(f"{m.package.relative_to(ROOT)}/py.typed is missing")
        urls = m.project.get("urls", {})
        if sorted(urls) != sorted(URL_KEYS):
            errors.append(f"{where}: [project.urls] must have exactly {', '.join(URL_KEYS)}")
            continue
        shared = {k: v for k, v in urls.items() if k != "Documentation"}
        shared_urls = shared_urls or shared
        if shared != shared_urls:
            errors.append(f"{where}: [project.urls] differ from the other members': {shared}")
        page = urls["Documentation"].removeprefix(DOCS_SITE).strip("/")
        sources = [ROOT / "docs" / f"{page}.md", ROOT / "docs" / page / "index.md"]
        if not urls["Documentation"].startswith(DOCS_SITE) or not any(p.is_file() for p in sources):
            errors.append(
                f"{where}: Documentation {urls['Documentation']} is not a page of the docs "
                f"site ({DOCS_SITE} + a page under docs/)"
            )
    return errors


def check_wheel(path: pathlib.Path, m: Member) -> list[str]:
    """LICENSE, py.typed, metadata and the namespace rule in one built wheel."""
    errors = []
    with zipfile.ZipFile(path) as wheel:
        names = set(wheel.namelist())
        (dist_info,) = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
        license_path = f"{dist_info}/licenses/LICENSE"
        if license_path not in names:
            errors.append(f"{path.name}: no {license_path}")
        elif wheel.read(license_path) != (ROOT / "LICENSE").read_bytes():
            errors.append(f"{path.name}: {license_path} differs from LICENSE")
        metadata = email.parser.Parser().parsestr(wheel.read(f"{dist_info}/METADATA").decode())
    typed = f"opifex/{m.package.name}/py.typed"
    if m.has_code and typed not in names:
        errors.append(f"{path.name}: no {typed}")
    if "opifex/__init__.py" in names:
        errors.append(f"{path.name}: ships opifex/__init__.py (opifex is a namespace package)")
    if metadata.get("License-Expression") != "Apache-2.0":
        errors.append(f"{path.name}: License-Expression is {metadata.get('License-Expression')}")
    labels = sorted(u.split(",")[0] for u in metadata.get_all("Project-URL", []))
    if labels != sorted(URL_KEYS):
        errors.append(f"{path.name}: Project-URL labels are {labels}")
    if (PRIVATE in metadata.get_all("Classifier", [])) != m.private:
        errors.append(f"{path.name}: classifier '{PRIVATE}' does not match its pyproject.toml")
    return errors


def check_sdist(path: pathlib.Path) -> list[str]:
    """The sdist carries LICENSE at its top."""
    with tarfile.open(path) as sdist:
        top = sdist.getnames()[0].split("/")[0]
        try:
            text = sdist.extractfile(f"{top}/LICENSE").read()
        except KeyError:
            return [f"{path.name}: no {top}/LICENSE"]
    return [] if text == (ROOT / "LICENSE").read_bytes() else [f"{path.name}: LICENSE differs"]


def dist_name(path: pathlib.Path) -> str:
    """The normalised distribution name of a wheel or sdist file name."""
    if path.suffix == ".whl":
        return normalize(path.name.split("-")[0])
    return normalize(path.name.removesuffix(".tar.gz").rsplit("-", 1)[0])


def check_dir(directory: pathlib.Path, all_members: list[Member], release: bool) -> list[str]:
    """Every member's wheel in DIR (all members), or a release: exactly the publishable ones."""
    errors = []
    by_name = {m.name: m for m in all_members}
    files = sorted(directory.glob("*.whl")) + sorted(directory.glob("*.tar.gz"))
    for path in files:
        m = by_name.get(dist_name(path))
        if m is None:
            errors.append(f"{path.name}: not a workspace member's distribution")
            continue
        if release and m.private:
            errors.append(f"{path.name}: {m.name} is not published ('{PRIVATE}')")
        errors += check_wheel(path, m) if path.suffix == ".whl" else check_sdist(path)
    wanted = [m for m in all_members if not (release and m.private)]
    for m in wanted:
        kinds = {".whl": "wheel", ".gz": "sdist"} if release else {".whl": "wheel"}
        for suffix, kind in kinds.items():
            if not any(dist_name(p) == m.name and p.suffix == suffix for p in files):
                errors.append(f"{directory}: no {kind} of {m.name}")
    return errors


def main() -> int:
    """Run the checks the arguments ask for."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dist_dir", nargs="?", type=pathlib.Path, help="built distributions")
    parser.add_argument("--release", action="store_true", help="DIR is a release")
    parser.add_argument("--publishable", action="store_true", help="print publishable names")
    args = parser.parse_args()
    all_members = members()
    errors = check_sources(all_members)
    if args.publishable:
        if errors:
            print("\n".join(errors), file=sys.stderr)
            return 1
        print("\n".join(m.name for m in all_members if not m.private))
        return 0
    if args.dist_dir is not None:
        errors += check_dir(args.dist_dir, all_members, args.release)
    elif args.release:
        parser.error("--release needs DIR")
    if errors:
        print("\n".join(f"FAILED: {e}" for e in errors), file=sys.stderr)
        return 1
    published = [m.name for m in all_members if not m.private]
    held = [m.name for m in all_members if m.private]
    checked = f"; {args.dist_dir} checked" if args.dist_dir else ""
    print(
        f"ok: {len(all_members)} members; published: {', '.join(published)}; "
        f"held back (no code, '{PRIVATE}'): {', '.join(held) or 'none'}{checked}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
