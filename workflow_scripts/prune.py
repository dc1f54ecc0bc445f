"""Prune a fraction of the training set by a method's self-influence, retrain."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake)

from gex_core.workflow.method_inputs import job_method_inputs  # noqa: E402
from gex_core.workflow.stages.experiments import run_prune  # noqa: E402

print(
    run_prune(
        inputs=job_method_inputs(snakemake, resume=job.resume),
        method=snakemake.wildcards.method,
        scores_path=snakemake.input.scores,
        fraction=float(snakemake.wildcards.fraction),
        order=snakemake.wildcards.order,
        graded=snakemake.params.graded,
        outputs=dict(snakemake.output.items()),
    )
)
job.finish()
