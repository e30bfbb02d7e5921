"""The package as users get it: the public names, a core that does not need Twisted, and a
twistd plugin that ships in the wheel and is found after an install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import syslogsrc

ROOT = Path(__file__).resolve().parent.parent


def test_public_names_resolve() -> None:
    for name in syslogsrc.__all__:
        assert getattr(syslogsrc, name) is not None
    with pytest.raises(AttributeError):
        syslogsrc.NoSuchThing  # noqa: B018


def test_the_core_imports_without_twisted() -> None:
    # framing and parsing are sans-IO: they must stay importable (and fast to import) alone
    code = (
        "import sys, syslogsrc.framing, syslogsrc.parsing; "
        "assert 'twisted' not in sys.modules, sorted(m for m in sys.modules if 'twisted' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


def test_wheel_ships_the_plugin_and_not_a_twisted_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, timeout=300, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )  # fmt: skip
    (wheel,) = tmp_path.glob("syslogsrc-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/syslogsrc_plugin.py" in names
    # an __init__.py in twisted/ or twisted/plugins/ would shadow Twisted itself
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert "syslogsrc/source.py" in names
    assert not any(n.startswith("tests/") for n in names)


@pytest.mark.skipif(shutil.which("twistd") is None, reason="twistd is not on PATH")
def test_installed_twistd_finds_the_plugin(tmp_path: Path) -> None:
    # Run from an unrelated directory with no PYTHONPATH: only the installation (pip install .
    # or pip install -e ., as .ci/run does) can make the plugin visible.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        ["twistd", "--help"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60
    )
    assert "syslogsrc" in proc.stdout, proc.stdout[-2000:]
