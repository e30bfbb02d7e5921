"""Sphinx configuration of syslogsrc's API reference (``python -m sphinx -W -b html docs/api
build/api``; `.ci/run` builds it with warnings as errors)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import syslogsrc  # noqa: E402

project = "syslogsrc"
release = version = syslogsrc.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.intersphinx", "sphinx.ext.viewcode"]
# syslogng (the daemon's module) exists only inside syslog-ng: outside it, the emulation
autodoc_mock_imports: list[str] = []
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_inherit_docstrings = False
# Every cross reference must resolve: a renamed class breaks the build, not a link.
nitpicky = True
nitpick_ignore_regex = [
    # names of the standard library, Twisted, zope and attrs inside type hints that Sphinx
    # cannot resolve without their inventories (no network in CI)
    (r"py:.*", r"(twisted|zope|attrs|collections|typing|datetime|_io|io|re|socket)\..*"),
    (r"py:.*", r"(Any|Callable|Iterable|Mapping|Sequence|IO|Protocol|Literal|Deferred|Failure)"),
    (r"py:.*", r"(IReactor\w*|IListeningPort|IAddress|IPushProducer|ITransport|Interface)"),
    (r"py:.*", r"(LogMessage|LogSource|syslogng\..*)"),
    (r"py:.*", r"<InterfaceClass .*>"),
    (r"py:class", r"(dt\.\w+|_dt\.\w+|queue\.\w+|threading\.\w+|abc\..*|T|Framing|OnError)"),
    (
        r"py:class",
        r"(ssl|interfaces)\.\w+|IStreamServerEndpoint|IProtocolFactory|ConnectionTracker|(prometheus_client\.\S+|\w*Collector\w*)",
    ),
    # private names (a base class shown by show-inheritance, say) are not in the reference,
    # nor are the names defined in private modules
    (r"py:.*", r"(.*\.)?_\w+"),
    (r"py:.*", r"syslogsrc\.(\w+\.)*_\w+\.\w+(\.\w+)?"),
]
intersphinx_mapping: dict = {}
# "bytes" in a type hint also names the attributes FrameStats.bytes and ListenerStats.bytes
suppress_warnings = ["ref.python"]
html_theme = "alabaster"
html_title = f"syslogsrc {version} API reference"
exclude_patterns = ["_build"]


# -- zope.interface: an Interface is documented as a class, its methods and attributes from
# its own descriptions (autodoc alone would show it as a module-level value).
from sphinx.ext.autodoc import ClassDocumenter  # noqa: E402
from zope.interface.interface import InterfaceClass, Method  # noqa: E402


class InterfaceDocumenter(ClassDocumenter):
    objtype = "interface"
    directivetype = "class"
    priority = ClassDocumenter.priority + 10

    @classmethod
    def can_document_member(cls, member, membername, isattr, parent):
        return isinstance(member, InterfaceClass)

    def format_signature(self, **kwargs) -> str:
        return ""

    def add_directive_header(self, sig: str) -> None:
        super().add_directive_header(sig)
        self.add_line(
            "   :canonical: " + self.modname + "." + self.object.__name__, self.get_sourcename()
        )

    def get_object_members(self, want_all: bool):
        return False, []

    def add_content(self, more_content) -> None:
        super().add_content(more_content)
        source = self.get_sourcename()
        iface = self.object
        for name in iface.names():  # in the order they are defined
            description = iface[name]
            doc = (description.getDoc() or "").strip().splitlines()
            self.add_line("", source)
            if isinstance(description, Method):
                self.add_line(f".. py:method:: {name}{description.getSignatureString()}", source)
            else:
                self.add_line(f".. py:attribute:: {name}", source)
            self.add_line("", source)
            for line in doc:
                self.add_line("   " + line.strip() if line.strip() else "", source)


def setup(app):
    app.add_autodocumenter(InterfaceDocumenter)
