"""Diagnostics of fitted models: small-study effects, influence and sensitivity."""
