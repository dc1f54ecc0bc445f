"""The only layer that knows files and Snakemake: result paths, stages, provenance, resume and fingerprints."""
