"""Test accuracy against the fraction pruned, per method, over seeds."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake, uses_jax=False)

from gex_core.workflow.stages.summaries import run_prune_summary  # noqa: E402

print(
    run_prune_summary(
        result_files=list(snakemake.input.prune),
        history_files=list(snakemake.input.histories),
        title=f"{snakemake.wildcards.dataset}: test accuracy after pruning",
        table=snakemake.output.table,
        plot=snakemake.output.plot,
    ).to_string()
)
job.finish()
