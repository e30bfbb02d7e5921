"""Every option is declared once (syslogsrc.optiontable): the daemon's options, twistd's and
syslogsrc-host's flags and the docs' tables are made from the declarations. These tests fail
when one of them drifts: a field without a declaration, a flag the table does not know, a
docs table edited by hand or left stale (``python -m syslogsrc.optiontable --write-docs``
rewrites them)."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from syslogsrc import optiontable
from syslogsrc.options import ListenerOptions, OptionError
from syslogsrc.service import Options
from syslogsrc.source import SourceOptions

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("which", sorted(optiontable.DOCS))
def test_the_docs_tables_are_made_from_the_declarations(which: str) -> None:
    text = (ROOT / optiontable.DOCS[which]).read_text()
    assert optiontable.docs_block(text, which) == optiontable.markdown_table(which), (
        f"{optiontable.DOCS[which]} is stale: run python -m syslogsrc.optiontable --write-docs"
    )


def test_every_field_is_declared_once_with_its_default() -> None:
    listener = {f.name: f for f in attrs.fields(ListenerOptions)}
    source = {f.name: f for f in attrs.fields(SourceOptions) if f.name != "listener"}
    declared = {o.attr: o for o in optiontable.OPTIONS}
    for name, field in listener.items():
        assert declared[name].scope == "listener" and field.default == declared[name].default
    for name, field in source.items():
        assert declared[name].scope == "source" and field.default == declared[name].default
    in_daemon = {o.attr for o in optiontable.OPTIONS if "daemon" in o.drivers}
    assert in_daemon == set(listener) | set(source)


def test_twistd_and_syslogsrc_host_flags_are_the_table() -> None:
    twistd = {p[0] for p in Options.optParameters}
    assert twistd == {
        o.name for o in optiontable.OPTIONS if "twistd" in o.drivers and o.name != "listen"
    }
    for p in Options.optParameters:  # one default everywhere
        assert p[2] == optiontable.option(p[0]).default_text()
    from syslogsrc.host import make_parser

    seen = {a.dest: a.default for a in make_parser()._actions}
    for o in optiontable.OPTIONS:
        if "host" in o.drivers:
            assert seen[o.attr] == o.default


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("max-connections", "0", "max-connections(0): must be a number >= 1"),
        ("framing", "crlf", "framing('crlf'): must be one of auto, octet-counting, lf, nul"),
        ("idle-timeout", "soon", "must be a number of seconds"),
        ("udp-split-lines", "maybe", "must be yes or no"),
        ("log-iw-size", "0", "log-iw-size(0): must be a number >= 1"),
        ("output-format", "xml", "must be one of json, text"),
    ],
)
def test_a_bad_value_names_the_option(name: str, value: str, says: str) -> None:
    with pytest.raises(OptionError, match=says.replace("(", r"\(").replace(")", r"\)")):
        optiontable.option(name).parse(value)


def test_typed_values_of_4x_are_taken() -> None:
    assert optiontable.option("udp-split-lines").parse(True) is True
    assert optiontable.option("max-message-size").parse(8192) == 8192
    assert optiontable.option("http-headers").parse(["a", "b"]) == ("a", "b")
    assert optiontable.option("allow").parse("10.0.0.0/8, ::1") == ("10.0.0.0/8", "::1")
