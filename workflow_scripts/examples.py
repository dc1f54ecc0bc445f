"""Most helpful and most harmful training images for a few test queries."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake, uses_jax=False)

from gex_core.workflow.stages.figures import run_examples  # noqa: E402

run_examples(
    data_path=snakemake.input.data,
    labels_path=snakemake.input.labels,
    scores_path=snakemake.input.scores,
    queries=snakemake.params.queries,
    per_side=snakemake.params.per_side,
    title=f"{snakemake.wildcards.method}, seed {snakemake.wildcards.seed}: "
    "train x test influence",
    output=snakemake.output.figure,
)
job.finish()
