"""pyproject.toml: `pip install -e .` works offline and `import mpjax` then works from any folder.

The install runs into a throwaway venv (``python -m venv --without-pip``) whose only
link to this project's .venv is a ``.pth`` line naming the .venv's site-packages (for
jax & co.; ``--no-deps`` installs nothing else). pip is the .venv's own, pointed at the
throwaway interpreter with ``--python``; ``--no-build-isolation --no-index`` builds with
the .venv's setuptools and never touches the network. It installs a copy of the
checkout, so nothing (``build/``, ``*.egg-info``) is written into the working tree, and
pip never sees the shared .venv as the environment to modify.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
_SKIP_DIRS = {".git", ".venv", "results", "build", "__pycache__", ".pytest_cache", ".ruff_cache"}
_BUILD_ONLY = {"setuptools", "wheel"}  # in requirements.txt for the offline build, not dependencies


def _name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONNOUSERSITE="1")
    return env


def _run(args, cwd, check=True):
    out = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=180)
    if check and out.returncode:
        raise AssertionError(f"{args} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def _copy_checkout(dest: pathlib.Path) -> pathlib.Path:
    """The project's source files, without the venv, results or build outputs."""
    def ignore(folder, names):
        return [n for n in names if n in _SKIP_DIRS or n.endswith((".egg-info", ".pyc"))]

    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    return dest


@pytest.fixture(scope="module")
def pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pyproject_and_requirements_list_the_same_packages(pyproject):
    project = pyproject["project"]
    declared = {}
    for req in project["dependencies"]:
        declared[_name(req)] = req.replace(" ", "")
    extras = project["optional-dependencies"]
    for group, reqs in extras.items():
        for req in reqs:
            if _name(req) != "mpjax" and group != "bench":
                declared.setdefault(_name(req), req.replace(" ", ""))
    pinned = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and _name(line) not in _BUILD_ONLY:
            pinned[_name(line)] = line.replace(" ", "")
    assert pinned == declared  # same names and the same version bounds
    assert set(extras) >= {"test", "bench"}
    assert "mpjax[experiments,data]" in extras["test"]
    # The version has one source: mpjax.__version__, read statically by setuptools.
    assert project["dynamic"] == ["version"]
    assert re.search(r'^__version__ = "[0-9.]+"$', (ROOT / "mpjax" / "__init__.py").read_text(), re.M)


def test_editable_install_imports_mpjax_from_any_folder(tmp_path):
    src = _copy_checkout(tmp_path / "checkout")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    py = venv / "bin" / "python"
    site = pathlib.Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             cwd=tmp_path).stdout.strip())
    host = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_host_deps.pth").write_text("\n".join(sorted(host)) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = [str(py), "-c", "import mpjax; print(mpjax.__file__); print(mpjax.__version__)"]
    before = _run(probe, cwd=elsewhere, check=False)
    assert before.returncode != 0 and "No module named 'mpjax'" in before.stderr  # the control

    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-build-isolation",
          "--no-index", "--quiet", "-e", str(src)], cwd=tmp_path)
    file, version = _run(probe, cwd=elsewhere).stdout.split()
    assert pathlib.Path(file) == src / "mpjax" / "__init__.py"  # editable: the checkout's own source
    assert version == _run([str(py), "-c", "import importlib.metadata as m; print(m.version('mpjax'))"],
                           cwd=elsewhere).stdout.strip()
    # Only the library is installed; the entry points still run from the checkout root.
    assert _run([str(py), "-c", "import experiments"], cwd=elsewhere, check=False).returncode != 0
    _run([str(py), "-c", "import experiments.regret, configs.regret"], cwd=src)
    assert not list(src.glob("*.egg-info")) and not (src / "build").exists()


def test_wheel_holds_the_library_and_its_dependencies(tmp_path, pyproject):
    src = _copy_checkout(tmp_path / "checkout")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
          "-w", str(tmp_path / "dist"), str(src)], cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("mpjax-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "mpjax").rglob("*.py")}
    assert sources <= set(names)  # every module, subpackages included
    assert {n.split("/")[0] for n in names} == {"mpjax", wheel.name.split("-py")[0] + ".dist-info"}
    requires = re.findall(r"^Requires-Dist: (.+)$", meta, re.M)
    for req in pyproject["project"]["dependencies"]:
        assert req in requires
    assert 'vowpalwabbit>=9.9; extra == "bench"' in requires
