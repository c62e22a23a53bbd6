"""The host tools of a production line, in one command: `dynreg VERB ...` (dynreg_tools.cli)."""

import os
import re

# The device library this package was built with: lib/dynreg of the checkout, through the
# symlink device_lib (a wheel holds copies of its files). The tools read its version and its
# built-in roots; they never import it (it is MicroPython code).
DEVICE_LIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "device_lib")


def library_version():
    """The dynreg version of DEVICE_LIB: what an application provisioned with it expects."""
    with open(os.path.join(DEVICE_LIB, "__init__.py")) as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)
