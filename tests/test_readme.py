"""The README's commands: marked where tools can find them, the test command the one CI runs.

Whether they work on a fresh Debian 12/13 is checked by hand with ``tests/tools/readme-check``
(it runs them, as extracted here, in debootstrapped chroots; too slow for CI).
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess

import pytest
from readme_commands import CI_STEP, NAMES, ROOT, ci_test_command, commands


def test_every_command_is_marked_once() -> None:
    found = commands()
    assert sorted(found) == sorted(NAMES)
    assert all(found.values())


def test_ci_runs_the_readme_test_command() -> None:
    # .ci/run promises "the README's command"; a change to either must be made to both
    assert ci_test_command() == commands()["test"], (
        "the README's test command and the last step of .ci/run differ"
    )


def test_ci_requires_the_daemons_before_it_runs_the_tests() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert "export SYSLOGSRC_REQUIRE_SYSLOG_NG=1" in ci[: ci.index(CI_STEP)]


def test_the_test_command_installs_the_test_extra_first() -> None:
    # the first-five-minutes bug: `python3 -m pytest` alone fails with "No module named pytest"
    test = commands()["test"]
    assert "pip install -e '.[test]'" in test
    assert test.index("pip install") < test.index("-m pytest")
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extra = cfg["options.extras_require"]["test"].split()
    assert any(req.startswith("pytest") for req in extra)


def test_install_and_test_use_the_same_venv() -> None:
    # Debian 12/13 refuse `pip install` into the system Python (PEP 668): both commands make
    # and activate .venv first, which needs the package the debian block installs
    found = commands()
    prefix = "python3 -m venv .venv && . .venv/bin/activate && pip install "
    assert found["install"].startswith(prefix)
    assert found["test"].startswith(prefix)
    assert "python3-venv" in found["debian"].split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_readme_check_script_parses() -> None:
    script = ROOT / "tests" / "tools" / "readme-check"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
