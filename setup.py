"""setup.py: ships twisted/plugins/syslogsrc_plugin.py, which find_packages() cannot see.

``twisted`` and ``twisted/plugins`` must not get an ``__init__.py`` (that would shadow Twisted
itself), so the plugin file is added as a module of the namespace ``twisted.plugins``.

Twisted finds plugins by scanning the directories of ``twisted.plugins.__path__``, which it
extends with ``<entry>/twisted/plugins`` for every ``sys.path`` entry. setuptools' default
editable install maps modules through an import hook instead of a path entry, so ``twistd``
would not see the plugin after ``pip install -e .``: editable installs here use the "compat"
mode, which puts the checkout on ``sys.path`` (as ``setup.py develop`` always did).
"""

from setuptools import setup
from setuptools.command.editable_wheel import editable_wheel


class editable_wheel_with_plugins(editable_wheel):
    def initialize_options(self) -> None:
        super().initialize_options()
        self.mode = "compat"


setup(
    py_modules=["twisted.plugins.syslogsrc_plugin"],
    cmdclass={"editable_wheel": editable_wheel_with_plugins},
)
