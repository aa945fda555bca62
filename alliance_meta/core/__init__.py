"""The vectorised numerical core: pure functions over float64 arrays.

Nothing here imports attrs, pandas or the public classes.
"""
