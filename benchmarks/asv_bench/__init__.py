"""asv benchmarks of alliance_meta's vectorised core (see docs/benchmarks.rst)."""
