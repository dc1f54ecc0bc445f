"""Detection table and bar chart over seeds for every configured method."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake, uses_jax=False)

from gex_core.workflow.stages.evaluate import run_summarize_detection  # noqa: E402

summary = run_summarize_detection(
    metric_files=list(snakemake.input.metrics),
    methods=list(snakemake.params.methods),
    seeds=list(snakemake.params.seeds),
    title=f"{snakemake.wildcards.dataset}: mislabel detection",
    table=snakemake.output.table,
    plot=snakemake.output.plot,
)
print(summary.to_string())
job.finish()
