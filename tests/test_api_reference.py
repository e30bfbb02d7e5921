"""The API reference (docs/api, built by .ci/run with Sphinx, warnings as errors) covers every
public module and every name the package exports: a new module or export without a page fails
here, before anyone looks for it in the reference."""

from __future__ import annotations

import importlib
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


def _documented_in(module_name: str) -> set[str]:
    """The names the page of ``module_name`` shows: autodoc documents the names of the module's
    ``__all__`` (defined there or imported from a private module), else those defined there."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is not None:
        return set(names)
    return {n for n, v in vars(module).items() if getattr(v, "__module__", None) == module_name}


def test_every_export_of_the_package_is_in_a_documented_module() -> None:
    documented = _documented_modules()
    for name in syslogsrc.__all__:
        if name == "__version__":
            continue
        value = getattr(syslogsrc, name)
        # the public module that shows it: where it is defined, or the one that re-exports it
        homes = {value.__module__, syslogsrc._EXPORTS[name]} & documented
        assert any(name in _documented_in(home) for home in homes), (
            f"syslogsrc.{name} (defined in {value.__module__}) is on no page of docs/api"
        )
