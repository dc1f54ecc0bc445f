"""Influence estimators. `registry` is importable without JAX; method modules are not."""
