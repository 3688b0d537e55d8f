"""The version of tenantry, in one place: the package metadata (pyproject's dynamic version),
`tenantry.__version__`, `tenantry version` and the server all read it from here."""

__version__ = "0.1.0"
