"""Effect-size measures, one module per family of input data.

Importing this package imports every family module, and each registers its
measures in :mod:`alliance_meta.data.measures`.
"""
