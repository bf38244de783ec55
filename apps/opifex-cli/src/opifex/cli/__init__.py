"""The ``opifex`` command line: demos and benchmarks of the opifex packages."""

from importlib.metadata import version

__version__ = version("opifex-cli")
