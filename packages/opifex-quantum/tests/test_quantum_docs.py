"""The quantum README and docs page say only what the code does.

Every ``python`` block of ``packages/opifex-quantum/README.md`` (the PyPI page) and of
``docs/packages/quantum.md`` runs, in order, in one namespace per page; a top-level
``print(...)`` with a trailing comment must print exactly that comment. The page's sentence
comparing the MINAO and SAD guesses is checked against ``benchmarks/results/quantum_scf.json``,
the file the benchmark writes and the benchmarks page renders.
"""

import ast
import contextlib
import io
import json
import re
import tokenize
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1]
ROOT = PACKAGE.parents[1]
README = PACKAGE / "README.md"
DOCS_PAGE = ROOT / "docs" / "packages" / "quantum.md"
RESULTS = ROOT / "benchmarks" / "results" / "quantum_scf.json"
_FENCE = re.compile(r"^```python\n(.*?)^```", flags=re.MULTILINE | re.DOTALL)


def _read(path: Path) -> str:
    if not path.is_file():
        pytest.skip(f"{path} is not part of this checkout")
    return path.read_text(encoding="utf-8")


def _trailing_comments(code: str) -> dict[int, str]:
    """Line number -> the text of the comment that ends it."""
    tokens = tokenize.generate_tokens(io.StringIO(code).readline)
    return {t.start[0]: t.string[1:].strip() for t in tokens if t.type == tokenize.COMMENT}


def _is_print(node: ast.stmt) -> bool:
    call = node.value if isinstance(node, ast.Expr) else None
    return isinstance(call, ast.Call) and getattr(call.func, "id", None) == "print"


def run_checked(code: str, namespace: dict) -> int:
    """Run ``code`` statement by statement; return how many commented prints were checked."""
    comments = _trailing_comments(code)
    checked = 0
    for node in ast.parse(code).body:
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            exec(compile(ast.Module([node], []), "<docs>", "exec"), namespace)
        expected = comments.get(node.end_lineno)
        if _is_print(node) and expected is not None:
            source = ast.get_source_segment(code, node)
            assert output.getvalue().strip() == expected, f"{source} printed {output.getvalue()!r}"
            checked += 1
    return checked


def test_run_checked_compares_prints_with_their_comments():
    assert run_checked("x = 6  # six\nprint(x * 7)  # 42\nprint(x)\n", {}) == 1
    with pytest.raises(AssertionError, match="printed '41"):
        run_checked("print(41)  # 42\n", {})


@pytest.mark.e2e
@pytest.mark.parametrize("page", [README, DOCS_PAGE], ids=["README", "docs-page"])
def test_every_example_prints_what_its_comments_say(page):
    blocks = _FENCE.findall(_read(page))
    namespace: dict = {"__name__": "__docs__"}
    assert sum(run_checked(block, namespace) for block in blocks) >= 2


def _systems(rows: list[dict]) -> str:
    names = [f"{r['molecule']}/{r['basis'].upper()}" for r in rows] or ["no system"]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def test_guess_sentence_matches_the_benchmark_results():
    results = json.loads(_read(RESULTS))
    rows = [r for r in results["iterations"] if r["opifex"]["status"] == r["opifex_sad"]["status"]]
    assert len(rows) == len(results["iterations"]), "a guess did not run in the benchmark"
    fewer = [r for r in rows if r["opifex"]["iterations"] == r["opifex_sad"]["iterations"] - 1]
    more = [r for r in rows if r["opifex"]["iterations"] == r["opifex_sad"]["iterations"] + 1]
    same = [r for r in rows if r["opifex"]["iterations"] == r["opifex_sad"]["iterations"]]
    assert len(fewer) + len(more) + len(same) == len(rows), "a difference of two or more cycles"
    sentence = (
        f"On the benchmark's {len(rows)} reference systems MINAO needs one SCF cycle fewer than"
        f" SAD on {_systems(fewer)}, one more on {_systems(more)}, and the same elsewhere"
    )
    page = " ".join(_read(DOCS_PAGE).split())
    assert sentence in page, f"docs/packages/quantum.md should say: {sentence}"
