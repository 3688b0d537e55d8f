"""Harness code shared by the tests and the benchmarks: servers to run, workloads to run
against them, and the checks of what they answered. Test modules (`test_*.py`) and conftest
files live beside the code they test; `bench/` imports this package and nothing else of
`tests`."""
