#!/usr/bin/env bash
# Install every workspace member alone, from its wheel, and smoke-test it outside the checkout.
#
# Each member (packages/*, apps/*) is built as a wheel and installed into a fresh, empty venv
# with nothing but its declared dependencies: third-party ones from the package index, opifex
# ones from the wheels built here (pinned by file URL, so a same-named project on the index is
# never picked). No dev tools, no other opifex package. There, with `python -I` from a
# directory outside the checkout, the script
#   * imports every module of the member (a module-level import of an undeclared dependency
#     fails here),
#   * checks that every module its code imports, anywhere, belongs to a direct dependency
#     declared in its pyproject.toml (one that only arrives transitively, like jax through
#     opifex-core, does not count),
#   * checks that `opifex` stays a namespace (no opifex/__init__.py) and that an opifex package
#     imports if and only if its distribution is installed (opifex-core's venv cannot import
#     opifex.second_order),
#   * runs a tiny real computation for the members that have code.
# Extras in EXTRAS are installed and checked in a venv of their own as well.
# Before that, .ci/check_dists.py checks the release rules on the sources and on every wheel:
# LICENSE in each wheel's dist-info/licenses, py.typed in each member with code, the
# Project-URLs, bounded opifex-* dependencies, and "Private :: Do Not Upload" on exactly the
# members without code (CONTRIBUTING.md, "Releases").
#
# Usage: .ci/check_isolated_installs.sh   (from anywhere; OPIFEX_CI_PYTHON overrides the Python
# version, default .python-version). Needs uv and the package index; the uv cache keeps repeat
# runs fast.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

# extras with a real use in code, each checked in its own venv ("distribution[extra]")
EXTRAS=("opifex-core[flax]")

python_version=${OPIFEX_CI_PYTHON:-$(cat .python-version)}
work=$(mktemp -d "${TMPDIR:-/tmp}/opifex-isolated.XXXXXX")
trap 'rm -rf "$work"' EXIT
unset PYTHONPATH VIRTUAL_ENV

# --- the members: distribution name and the module under src/opifex/ -------------------------
declare -A module_of
members=()
for pyproject in packages/*/pyproject.toml apps/*/pyproject.toml; do
    dir=$(dirname "$pyproject")
    name=$(sed -n 's/^name = "\(.*\)"$/\1/p' "$pyproject" | head -n 1)
    mapfile -t modules < <(find "$dir/src/opifex" -mindepth 1 -maxdepth 1 -type d \
        ! -name __pycache__ -printf '%f\n')
    if [[ -z $name || ${#modules[@]} -ne 1 ]]; then
        echo "error: $dir: expected a [project] name and one package under src/opifex/" >&2
        exit 1
    fi
    if [[ -e $dir/src/opifex/__init__.py ]]; then
        echo "error: $dir/src/opifex/__init__.py exists; opifex is a namespace package" >&2
        exit 1
    fi
    module_of[$name]=${modules[0]}
    members+=("$name")
done
member_args=()
for name in "${members[@]}"; do member_args+=("$name=${module_of[$name]}"); done

# --- wheels, and a constraint per member pinning it to its wheel ------------------------------
echo "--- building the wheels of ${#members[@]} members"
uv build --all-packages --wheel --quiet -o "$work/dist"
echo "--- release rules on the sources and wheels: .ci/check_dists.py"
uv run --no-project --quiet --python "$python_version" .ci/check_dists.py "$work/dist"
for name in "${members[@]}"; do
    wheels=("$work/dist/${name//-/_}"-*.whl)
    [[ -f ${wheels[0]} ]] || { echo "error: no wheel for $name" >&2; exit 1; }
    echo "$name @ file://${wheels[0]}"
done >"$work/constraints.txt"

cat >"$work/smoke.py" <<'PY'
"""Smoke test of one installed opifex distribution.

python -I smoke.py DIST MODULE EXTRA NAME=MODULE...  (EXTRA "-" for none; one NAME=MODULE per
workspace member).
"""

import ast
import importlib
import importlib.metadata
import importlib.util
import pathlib
import pkgutil
import re
import subprocess
import sys
import sysconfig
import tempfile

dist, module, extra, *pairs = sys.argv[1:]
members = dict(pair.split("=", 1) for pair in pairs)
site = pathlib.Path(sysconfig.get_paths()["purelib"]).resolve()


def fail(message):
    """Exit with a message naming the distribution."""
    sys.exit(f"FAILED {dist}: {message}")


def installed_opifex():
    """The installed opifex distributions, normalised names."""
    names = (normalize(d.metadata["Name"]) for d in importlib.metadata.distributions())
    return {n for n in names if n.startswith("opifex")}


def normalize(name):
    """A distribution name in normal form (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def undeclared_imports(package_dir):
    """Imported top-level modules whose distribution is not a declared direct dependency.

    Imports inside functions count too; a dependency of an extra counts as declared.
    """
    declared = {dist} | {
        normalize(re.match(r"[A-Za-z0-9._-]+", req).group(0))
        for req in importlib.metadata.requires(dist) or []
    }
    dist_of = {
        m: {normalize(d) for d in ds}
        for m, ds in importlib.metadata.packages_distributions().items()
    }
    dist_of.update({f"opifex.{mod}": {name} for name, mod in members.items()})
    missing = {}
    for path in sorted(pathlib.Path(package_dir).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                key = ".".join(parts[:2]) if parts[0] == "opifex" else parts[0]
                if parts[0] in sys.stdlib_module_names:
                    continue
                if not dist_of.get(key, {normalize(key)}) & declared:
                    missing.setdefault(key, set()).add(str(path.relative_to(site)))
    return [f"{key} ({', '.join(sorted(paths))})" for key, paths in sorted(missing.items())]


def check_core():
    """Least-squares optimum of a quadratic family task, checkpoint round trip, NNX adapter."""
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    from opifex.core import families, load_metadata, load_pytree, save_pytree, split_nnx

    family = families.QuadraticFamily(dimension=5, num_rows=8)
    task = family.sample(jax.random.key(0))
    theta = family.optimum(task)
    reference = np.linalg.lstsq(np.asarray(task.matrix), np.asarray(task.target), rcond=None)[0]
    np.testing.assert_allclose(np.asarray(theta), reference, rtol=1e-9, atol=1e-12)
    tree = {"task": task, "theta": theta, "steps": [np.int32(3), 2.5]}
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp, "state.npz")
        save_pytree(path, tree, metadata={"step": 3})
        back = load_pytree(path, like=tree)
        assert load_metadata(path) == {"step": 3}, load_metadata(path)
    assert jax.tree.structure(back) == jax.tree.structure(tree)
    jax.tree.map(np.testing.assert_array_equal, back, tree)
    if extra == "flax":
        import jax.numpy as jnp
        from flax import nnx

        from opifex.core import merge_nnx

        graphdef, params, rest = split_nnx(nnx.Linear(2, 1, rngs=nnx.Rngs(0)))
        assert sorted(params) == ["bias", "kernel"], sorted(params)
        params = {"kernel": jnp.ones((2, 1)), "bias": jnp.zeros(1)}
        out = merge_nnx(graphdef, params, rest)(jnp.array([[1.0, 2.0]]))
        np.testing.assert_allclose(np.asarray(out), [[3.0]])
    else:
        try:
            split_nnx(object())
        except ImportError as error:
            assert "opifex-core[flax]" in str(error), error
        else:
            fail("split_nnx without flax did not raise ImportError")


def check_second_order():
    """L-BFGS on 2-D Rosenbrock and Levenberg-Marquardt on MGH Bard, float64."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    from opifex.second_order import get_mgh_problem, least_squares, minimize

    def rosen(x):
        return 100.0 * (x[1] - x[0] ** 2) ** 2 + (1.0 - x[0]) ** 2

    result = minimize(rosen, jnp.array([-1.2, 1.0]), tolerance=1e-8)
    x, y = np.asarray(result.params, dtype=np.float64)
    grad = np.array([-400.0 * x * (y - x**2) - 2.0 * (1.0 - x), 200.0 * (y - x**2)])
    assert bool(result.converged), result.message
    assert np.linalg.norm(grad) < 1e-6, np.linalg.norm(grad)
    np.testing.assert_allclose([x, y], [1.0, 1.0], rtol=1e-6)

    problem = get_mgh_problem("bard")
    fit = least_squares(problem.residual_fn, jnp.array(problem.x0))
    assert bool(fit.converged), fit.message
    np.testing.assert_allclose(2.0 * float(fit.value), problem.optimum_value, rtol=1e-5)


def check_l2o():
    """The shipped pretrained optimiser loads from the wheel and beats Adam(1.0) on quadratics."""
    import jax
    import numpy as np
    import optax

    from opifex.core.families import QuadraticFamily
    from opifex.l2o import load_pretrained, run_optimizer

    family = QuadraticFamily(dimension=10)
    keys = jax.random.split(jax.random.key(7), 32)
    learned = run_optimizer(load_pretrained("quadratic10_mlp").optimizer, family, keys, 100)
    adam = run_optimizer(optax.adam(1.0), family, keys, 100)
    final_learned, final_adam = np.asarray(learned.value), np.asarray(adam.value)
    assert np.all(np.isfinite(final_learned)), "the pretrained optimiser diverged"
    ratio = final_learned / final_adam
    assert np.median(ratio) < 0.5, np.median(ratio)


def check_meta():
    """MAML's adaptation on task arrays is SGD on the support loss (checked against NumPy)."""
    import jax.numpy as jnp
    import numpy as np

    from opifex.meta import MAMLConfig, MAMLOptimizer

    def loss_fn(w, x, y):
        return 0.5 * jnp.mean((x @ w - y) ** 2)

    x = np.random.default_rng(0).normal(size=(10, 2)).astype(np.float32)
    y = x @ np.array([1.5, -0.5], np.float32)
    maml = MAMLOptimizer(MAMLConfig(inner_learning_rate=0.2, inner_steps=3), loss_fn=loss_fn)
    adapted = np.asarray(maml.adapt(jnp.zeros(2), (jnp.asarray(x), jnp.asarray(y))))
    w = np.zeros(2)
    for _ in range(3):
        w = w - 0.2 * x.T @ (x @ w - y) / len(y)
    np.testing.assert_allclose(adapted, w, rtol=1e-5)


def check_quantum():
    """RHF/STO-3G water from the wheel's basis data; forces sum to zero; no PySCF needed."""
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    from opifex.quantum import molecule_from_name, nuclear_gradient, run_scf, to_pyscf

    water = molecule_from_name("H2O")
    result = run_scf(water, "sto-3g")
    assert bool(result.converged), result.message
    # PySCF 2.14 on the same basis-set-exchange data (test_quantum_targets.py)
    assert abs(float(result.value) - -74.9420799540) < 1e-8, float(result.value)
    gradient = np.asarray(nuclear_gradient(water, "sto-3g"))
    assert np.abs(gradient.sum(axis=0)).max() < 1e-8, gradient.sum(axis=0)
    try:
        to_pyscf(water)
    except ImportError as error:
        assert "opifex-quantum[pyscf]" in str(error), error
    else:
        fail("to_pyscf without pyscf did not raise ImportError")


def check_control():
    """MPC holds a pendulum near upright; the safety filter brakes a car that closes in."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    from opifex.control import (
        MPCController, SafetyFilter, adaptive_cruise_control, discretize, pendulum,
        quadratic_cost, time_headway_barrier, TrajectoryProblem,
    )

    model = pendulum()
    problem = TrajectoryProblem.from_dynamics(
        model, quadratic_cost([1.0, 0.1], [0.01]), horizon=20, dt=0.05
    )
    controller, step = MPCController(problem, max_steps=5), discretize(model, 0.05)
    x = jnp.array([0.15, 0.0])  # |u| <= 2 holds it while m g l sin(theta) < 2
    for k in range(40):
        x = step(x, controller.step(x), 0.05 * k)
    assert abs(float(x[0])) < 0.01, x
    safety = SafetyFilter(adaptive_cruise_control(), [time_headway_barrier(1.8)])
    result = safety.filter(jnp.array([20.0, 40.0, 13.89]), jnp.array([3000.0]))
    assert bool(result.feasible) and float(result.control[0]) < 0.0, result


def check_cli():
    """`opifex --version` lists the installed opifex distributions; `opifex demo` succeeds."""
    opifex = pathlib.Path(sys.executable).parent / "opifex"
    versions = subprocess.run([opifex, "--version"], check=True, capture_output=True, text=True)
    listed = {line.split()[0] for line in versions.stdout.splitlines()}
    if listed != installed_opifex():
        fail(f"opifex --version lists {sorted(listed)}, expected {sorted(installed_opifex())}")
    subprocess.run([opifex, "demo"], check=True, stdout=subprocess.DEVNULL)


def check_deploy():
    """Export a function, publish it, load it back by hash, call it; a flipped byte is refused."""
    import numpy as np

    from opifex.deploy import (
        ArtifactIntegrityError,
        Registry,
        Signature,
        TensorSpec,
        export_function,
    )

    signature = Signature(
        inputs=(TensorSpec("x", (3,), "float32"),), outputs=(TensorSpec("y", (), "float32"),)
    )
    exported = export_function(lambda x: {"y": (x * x).sum()}, signature, name="square")
    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry(tmp)
        version = registry.publish("square", exported)
        loaded = registry.load("square", version)
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        np.testing.assert_allclose(loaded({"x": x})["y"], (x * x).sum(axis=1))
        artifact = next(pathlib.Path(tmp).rglob("artifact.bin"))
        data = bytearray(artifact.read_bytes())
        data[len(data) // 2] ^= 0xFF
        artifact.write_bytes(bytes(data))
        try:
            registry.load("square", version)
        except ArtifactIntegrityError:
            pass
        else:
            fail("a corrupted artifact was loaded")


SMOKE = {
    "core": check_core,
    "second_order": check_second_order,
    "l2o": check_l2o,
    "meta": check_meta,
    "quantum": check_quantum,
    "control": check_control,
    "deploy": check_deploy,
    "cli": check_cli,
}

if (site / "opifex" / "__init__.py").exists():
    fail(f"{site / 'opifex' / '__init__.py'} exists; opifex must stay a namespace package")
package = importlib.import_module(f"opifex.{module}")
if not pathlib.Path(package.__file__).resolve().is_relative_to(site):
    fail(f"opifex.{module} imported from {package.__file__}, not from {site}")
modules = [info.name for info in pkgutil.walk_packages(package.__path__, f"opifex.{module}.")]
for name in modules:
    importlib.import_module(name)

if missing := undeclared_imports(package.__path__[0]):
    fail(f"imports not declared in {dist}'s pyproject.toml dependencies: {', '.join(missing)}")

installed = installed_opifex()
for other, other_module in members.items():
    found = importlib.util.find_spec(f"opifex.{other_module}") is not None
    if found != (other in installed):
        fail(f"opifex.{other_module} importable={found} but {other} installed={other in installed}")

if module in SMOKE:
    SMOKE[module]()
    done = "smoke computation passed"
elif modules:
    done = "NOTE: has code but no smoke computation in .ci/check_isolated_installs.sh"
else:
    done = "import only (no code yet)"
print(
    f"ok {dist}{'' if extra == '-' else f'[{extra}]'}: {1 + len(modules)} modules, "
    f"opifex installed {sorted(installed)}; {done}"
)
PY

# --- one venv per member (and per extra) ------------------------------------------------------
readme_example() {  # readme_example DIST VENV: a built member's README example, in its venv alone
    local dir
    dir=$(dirname "$(grep -l "^name = \"$1\"$" "$root"/packages/*/pyproject.toml \
        "$root"/apps/*/pyproject.toml)")
    if grep -q "Private :: Do Not Upload" "$dir/pyproject.toml"; then
        return 0  # no code yet: its README has no example
    fi
    python3 "$root/.ci/readme_example.py" "$dir/README.md" "$2/bin/python"
}

failed=()
check() {  # check DIST [EXTRA]: record a failure and go on with the others
    local name=$1 extra=${2:-} start=$SECONDS venv label
    label="$name${extra:+[$extra]}"
    venv="$work/venv-$name${extra:+-$extra}"
    echo "--- $label: fresh venv, install, smoke test"
    if ! (cd "$work" &&
        uv venv --quiet --python "$python_version" "$venv" &&
        uv pip install --quiet --python "$venv/bin/python" \
            --constraint "$work/constraints.txt" "$label" &&
        "$venv/bin/python" -I "$work/smoke.py" "$name" "${module_of[$name]}" "${extra:--}" \
            "${member_args[@]}" &&
        readme_example "$name" "$venv"); then
        failed+=("$label")
    fi
    echo "    ($((SECONDS - start)) s)"
}

for name in "${members[@]}"; do check "$name"; done
for spec in "${EXTRAS[@]}"; do
    name=${spec%%\[*}
    extra=${spec#*\[}
    check "$name" "${extra%\]}"
done
if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]} (see above)" >&2
    exit 1
fi
echo "--- all ${#members[@]} members install and work alone (+ ${#EXTRAS[@]} extras)"
