"""Reliability harness: workloads that try to break isolation and durability, the servers
and private databases they run against, and the checks of what survived."""
