"""Prune a fraction of the training set by a method's self-influence, retrain."""

from gex_core.workflow.jobenv import begin_job, run_inputs

job = begin_job(snakemake)

from gex_core.workflow.stages.experiments import run_prune  # noqa: E402

print(
    run_prune(
        inputs=run_inputs(snakemake, resume=job.resume),
        method=snakemake.wildcards.method,
        scores_path=snakemake.input.scores,
        fraction=float(snakemake.wildcards.fraction),
        order=snakemake.wildcards.order,
        outputs=dict(snakemake.output.items()),
    )
)
job.finish()
