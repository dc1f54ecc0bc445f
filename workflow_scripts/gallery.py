"""The top-scored training images of one method and seed, with given and true labels."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake, uses_jax=False)

from gex_core.workflow.stages.figures import run_gallery  # noqa: E402

run_gallery(
    data_path=snakemake.input.data,
    labels_path=snakemake.input.labels,
    scores_path=snakemake.input.scores,
    count=snakemake.params.images,
    title=f"{snakemake.wildcards.method}, seed {snakemake.wildcards.seed}: "
    "highest self-influence",
    output=snakemake.output.figure,
)
job.finish()
