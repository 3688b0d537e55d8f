"""`tenantry version` prints the version the package was installed with."""

from __future__ import annotations

import subprocess
from importlib.metadata import version

from typer.testing import CliRunner

from tenantry import __version__
from tenantry.cli import app
from tests.support.servers import tenantry_command


def test_version_prints_the_package_metadata_version() -> None:
    printed = CliRunner().invoke(app, ["version"]).output.strip()
    assert printed == __version__
    assert printed == version("tenantry")


def test_the_installed_script_prints_it_too() -> None:
    run = subprocess.run(
        [tenantry_command(), "version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert run.stdout.strip() == version("tenantry")
