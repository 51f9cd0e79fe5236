"""pytest fixtures of the Python tests (helpers.py has the shared functions)."""

import os

import pytest


@pytest.fixture
def cli():
    """The xntk program of this build (CTest passes its path in XNTK_CLI)."""
    path = os.environ.get("XNTK_CLI", "")
    if not path or not os.path.exists(path):
        pytest.skip("the xntk program is not built (XNTK_CLI unset)")
    return path
