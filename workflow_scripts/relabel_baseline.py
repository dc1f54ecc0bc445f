"""Retrain on the clean labels (oracle) or on the model's predictions for every sample."""

from gex_core.jobenv import run_inputs, start_job

start_job(snakemake.log[0], rule=snakemake.rule)

from gex_core.stages.experiments import run_relabel_baseline  # noqa: E402

print(
    run_relabel_baseline(
        inputs=run_inputs(snakemake),
        setting=snakemake.wildcards.setting,
        outputs=dict(snakemake.output.items()),
    )
)
