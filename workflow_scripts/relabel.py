"""Relabel the samples a method flags (Otsu threshold), retrain, test accuracy."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake)

from gex_core.workflow.method_inputs import job_method_inputs  # noqa: E402
from gex_core.workflow.stages.experiments import run_relabel  # noqa: E402

print(
    run_relabel(
        inputs=job_method_inputs(snakemake, resume=job.resume),
        method=snakemake.wildcards.method,
        scores_path=snakemake.input.scores,
        mode=snakemake.wildcards.mode,
        graded=snakemake.params.graded,
        outputs=dict(snakemake.output.items()),
    )
)
job.finish()
