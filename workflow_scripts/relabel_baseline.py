"""Retrain on the clean labels (oracle) or on the model's predictions for every sample."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake)

from gex_core.workflow.method_inputs import job_method_inputs  # noqa: E402
from gex_core.workflow.stages.experiments import run_relabel_baseline  # noqa: E402

print(
    run_relabel_baseline(
        inputs=job_method_inputs(snakemake, resume=job.resume),
        setting=snakemake.wildcards.setting,
        outputs=dict(snakemake.output.items()),
    )
)
job.finish()
