"""The package as a user gets it: ``python -m build`` makes an sdist and a wheel (the wheel built from
the sdist, so the sdist is complete), the wheel installs into a fresh venv and works from there.

One build, one install, then several checks against them (module-scoped fixture): about 15-30 s.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.packaging, pytest.mark.slow]


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=240, **kw)
    assert p.returncode == 0, f"{argv} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
    return p


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)])
    return out


def _one(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {dist}: {found}"
    return found[0]


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh venv (no system site-packages) with the wheel installed; returns (bin dir, env)."""
    root = tmp_path_factory.mktemp("venv")
    venv.create(root, with_pip=False, symlinks=True)
    py = root / "bin" / "python"
    wheel = _one(dist, "*.whl")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    # This environment's pip installs into the new venv (pip --python): no ensurepip run.
    pip = [sys.executable, "-m", "pip", "--python", str(py), "install", "-q"]
    deps = subprocess.run([*pip, str(wheel)], capture_output=True, text=True, timeout=240)
    if deps.returncode != 0:
        # No index reachable: the wheel alone, and its dependencies (cffi, pycparser, PyYAML) taken
        # from this environment through PYTHONPATH (a directory of links, not the whole site-packages,
        # so that the ioengine under test can only be the installed wheel).
        _run([*pip, "--no-deps", str(wheel)])
        import _cffi_backend
        import cffi
        import pycparser
        import yaml

        links = root / "deps"
        links.mkdir()
        for mod in (cffi, pycparser, yaml):
            (links / Path(mod.__file__).parent.name).symlink_to(Path(mod.__file__).parent)
        (links / Path(_cffi_backend.__file__).name).symlink_to(_cffi_backend.__file__)
        env["PYTHONPATH"] = str(links)
    return root / "bin", env


def test_wheel_contents(dist: Path) -> None:
    names = zipfile.ZipFile(_one(dist, "*.whl")).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"ioengine", "iosched", "ioengine-0.1.0.dist-info"}, tops  # no top-level `tools`
    for required in ("ioengine/py.typed", "iosched/py.typed", "ioengine/_dmabuf.pyi", "ioengine/_iopath.pyi",
                     "ioengine/tools/iotune.py", "ioengine-0.1.0.dist-info/licenses/LICENSE",
                     "ioengine-0.1.0.dist-info/licenses/NOTICE"):
        assert required in names, required
    assert any(n.startswith("ioengine/_native.") and n.endswith(".so") for n in names)
    assert any(n.startswith("ioengine/_iopath.") and n.endswith(".so") for n in names)
    assert any(n.startswith("ioengine/_dmabuf.") and n.endswith(".so") for n in names)
    meta = zipfile.ZipFile(_one(dist, "*.whl")).read("ioengine-0.1.0.dist-info/METADATA").decode()
    assert "License-Expression: Apache-2.0" in meta


def test_sdist_has_the_c_sources(dist: Path) -> None:
    import tarfile

    with tarfile.open(_one(dist, "*.tar.gz")) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for required in ("setup.py", "pyproject.toml", "LICENSE", "NOTICE", "native/build_native.py",
                     "native/ioengine_native.h", "native/ioengine_native.c", "native/dmabuf.c", "native/iopath.c"):
        assert required in names, required


def test_installed_wheel_does_direct_io(installed: tuple[Path, dict[str, str]], scratch: Path) -> None:
    bindir, env = installed
    script = textwrap.dedent("""
        import sys, ioengine
        from ioengine import OpenFlags
        assert ioengine.__file__.startswith(sys.prefix), ioengine.__file__

        async def main(path):
            async with await ioengine.open_file_dma(path, OpenFlags.RW | OpenFlags.CREATE) as f:
                buf = f.allocate_buffer(4096)
                buf[:5] = b"hello"
                assert await f.dma_write(0, buf) == 4096
                await f.flush()
                back = f.allocate_buffer(4096)
                assert await f.dma_read(0, back) == 4096
                assert bytes(back[:5]) == b"hello"
            return ioengine.get_reactor().backend.name

        print("ok", ioengine.run(main(sys.argv[1])))
    """)
    # cwd outside the repository: the checkout must not be what gets imported.
    p = _run([str(bindir / "python"), "-c", script, str(scratch / "data.bin")], cwd=scratch, env=env)
    assert p.stdout.startswith("ok "), p.stdout


@pytest.mark.parametrize("command", ["iotune", "ioengine-bench"])
def test_installed_commands(installed: tuple[Path, dict[str, str]], tmp_path: Path, command: str) -> None:
    bindir, env = installed
    p = _run([str(bindir / command), "--help"], cwd=tmp_path, env=env)
    assert "usage:" in p.stdout
