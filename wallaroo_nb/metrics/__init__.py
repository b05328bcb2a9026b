"""Per-message latency metrics: histogram and recorder (workers), store (driver).

Kept import-free on purpose: workers import the submodules they need without
pulling in pandas through `store`.
"""
