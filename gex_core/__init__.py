"""gex_core: influence estimation with Geometric Ensembles (GEX) and its baselines.

Importing the package is cheap (no JAX): the Snakefile imports `gex_core.workflow.paths` and
`gex_core.workflow.fingerprint` at parse time, and only job scripts import the JAX modules.
"""

__version__ = "0.1.0"
