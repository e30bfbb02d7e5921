"""The API reference (docs/api, built by .ci/run with Sphinx, warnings as errors) covers every
public module and every name the package exports: a new module or export without a page fails
here, before anyone looks for it in the reference."""

from __future__ import annotations

import pkgutil
import re
from pathlib import Path

import syslogsrc

API = Path(__file__).resolve().parents[1] / "docs" / "api"


def _documented_modules() -> set[str]:
    text = "\n".join(p.read_text() for p in API.glob("*.rst"))
    return set(re.findall(r"^\.\. automodule:: (\S+)", text, re.M))


def test_every_public_module_has_a_page() -> None:
    public = {"syslogsrc"}
    for info in pkgutil.walk_packages(syslogsrc.__path__, "syslogsrc."):
        if not any(part.startswith("_") for part in info.name.split(".")) and not info.ispkg:
            public.add(info.name)
    missing = public - _documented_modules()
    assert not missing, f"modules without a page in docs/api: {sorted(missing)}"


def test_every_export_of_the_package_is_in_a_documented_module() -> None:
    documented = _documented_modules()
    for name in syslogsrc.__all__:
        if name == "__version__":
            continue
        module = getattr(syslogsrc, name).__module__
        assert module in documented, f"syslogsrc.{name} lives in {module}, which has no page"
