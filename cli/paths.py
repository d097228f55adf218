"""Where dorgu finds what it reads at run time besides its code: the CRDs, the samples and the demo app.

The repository's ``deploy/`` is their one copy. A wheel carries ``deploy/crds``, ``deploy/samples`` and
``deploy/demo-app`` as package data under ``cli/deploy/`` (``pyproject.toml`` maps the package ``cli.deploy``
to the directory ``deploy/``), so an installed dorgu finds them inside its ``cli`` package through
:mod:`importlib.resources`; a source checkout (run with ``PYTHONPATH=<checkout>`` or installed editable) has
no ``cli/deploy/`` and uses the checkout's ``deploy/`` next to ``cli/``. Every other module asks this one.

The code's own location is here too: commands that start ``python -m cli.main`` in a child process give it
:func:`code_root` as ``PYTHONPATH`` and working directory, so the child imports the same code as its parent
(and never a ``cli/`` that happens to lie in the user's current directory).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

_MARKER = Path("crds") / "dorgu.io_applicationpersonas.yaml"
"""A file every copy of the tree has: a directory without it is not dorgu's ``deploy/``."""


def _package_dir() -> Path:
    # The ``cli`` package on disk (a wheel's site-packages/cli, or a checkout's cli/); dorgu is never run
    # from a zip, so the resource root is a real directory.
    return Path(str(files(__package__ or "cli")))


def code_root() -> Path:
    """The directory the top-level packages (``cli``, ``dorgu``, …) were imported from: a checkout's root
    or an installation's site-packages."""
    return _package_dir().parent


def deploy_dir() -> Path:
    """The tree with ``crds/``, ``samples/`` and ``demo-app/``: the wheel's package data first (an installed
    dorgu), else the checkout's ``deploy/``. Raises :class:`FileNotFoundError` naming both places when
    neither has it (a broken installation)."""
    installed, checkout = _package_dir() / "deploy", code_root() / "deploy"
    for candidate in (installed, checkout):
        if (candidate / _MARKER).is_file():
            return candidate
    raise FileNotFoundError(f"dorgu's data files (CRDs, samples) are in neither {installed} nor {checkout}")


def crd_files() -> list[Path]:
    """dorgu's CustomResourceDefinitions (``deploy/crds/*.yaml``), sorted."""
    return sorted((deploy_dir() / "crds").glob("*.yaml"))


def sample_files() -> list[Path]:
    """The sample persona, ClusterPersona and Deployment (``deploy/samples/*.yaml``), sorted."""
    return sorted((deploy_dir() / "samples").glob("*.yaml"))


def demo_app_dir() -> Path:
    """The sample app ``dorgu dev demo`` generates manifests for (``deploy/demo-app``)."""
    return deploy_dir() / "demo-app"
