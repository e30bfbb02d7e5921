"""setup.py: ships twisted/plugins/syslogsrc_plugin.py, which find_packages() cannot see.

``twisted`` and ``twisted/plugins`` must not get an ``__init__.py`` (that would shadow Twisted
itself), so the plugin file is added as a py_module of the namespace ``twisted.plugins``. For
``pip install -e .`` the module is reachable because setuptools' editable finder maps it too.
"""

from setuptools import setup

setup(py_modules=["twisted.plugins.syslogsrc_plugin"])
