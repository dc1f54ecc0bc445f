"""Spearman agreement of the methods' self-influence rankings, averaged over seeds."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake, uses_jax=False)

from gex_core.workflow.stages.summaries import run_rank_agreement  # noqa: E402

print(
    run_rank_agreement(
        score_files=list(snakemake.input.scores),
        methods=list(snakemake.params.methods),
        seeds=list(snakemake.params.seeds),
        title=f"{snakemake.wildcards.dataset}: agreement of self-influence rankings",
        table=snakemake.output.table,
        plot=snakemake.output.plot,
    ).to_string()
)
job.finish()
