"""Relabel the samples a method flags (Otsu threshold), retrain, test accuracy."""

from gex_core.jobenv import run_inputs, start_job

start_job(snakemake.log[0], rule=snakemake.rule)

from gex_core.stages.experiments import run_relabel  # noqa: E402

print(
    run_relabel(
        inputs=run_inputs(snakemake),
        method=snakemake.wildcards.method,
        scores_path=snakemake.input.scores,
        mode=snakemake.wildcards.mode,
        outputs=dict(snakemake.output.items()),
    )
)
