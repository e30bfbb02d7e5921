"""The commands README.md tells a new user to run, found by their markers, so that the tools
that check them (tests/test_readme.py, tests/tools/readme-check) run the README's text and not
a copy of it.

In README.md a command is the ``sh`` block right after a marker line
``<!-- readme-check: NAME -->``:

* ``debian``: what a fresh Debian 12/13 needs first, as root (the venv module);
* ``install``: install and run the receiver (it keeps running);
* ``try``: send it a message, from another shell;
* ``test``: install what the tests need and run them (``.ci/run`` runs exactly this).

``python3 tests/readme_commands.py NAME`` prints one of them (for shell scripts).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("debian", "install", "try", "test")
_BLOCK = re.compile(r"^<!-- readme-check: ([\w-]+) -->\n```sh\n(.*?)^```$", re.M | re.S)
#: the line in .ci/run after which it runs the README's test command
CI_STEP = 'step "tests (the README\'s command)"'


def commands(readme: str | None = None) -> dict[str, str]:
    """Every marked block of README.md by name, as the text to hand to ``bash -c``."""
    if readme is None:
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found: dict[str, str] = {}
    for name, body in _BLOCK.findall(readme):
        if name in found:
            raise ValueError(f"README.md marks two blocks readme-check: {name}")
        found[name] = body.strip()
    return found


def ci_test_command(ci: str | None = None) -> str:
    """The commands .ci/run runs in its last step, the one that says it runs the README's."""
    if ci is None:
        ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    lines = ci.splitlines()
    if CI_STEP not in lines:
        raise ValueError(f".ci/run has no line {CI_STEP}")
    rest = lines[lines.index(CI_STEP) + 1 :]
    return "\n".join(s for s in (x.strip() for x in rest) if s and not s.startswith("#"))


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in NAMES:
        print(f"usage: readme_commands.py {{{'|'.join(NAMES)}}}", file=sys.stderr)
        return 2
    found = commands()
    if argv[0] not in found:
        print(f"README.md has no block marked readme-check: {argv[0]}", file=sys.stderr)
        return 1
    print(found[argv[0]])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
