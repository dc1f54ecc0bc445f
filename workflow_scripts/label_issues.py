"""One method and seed: the label-issue table and the gallery of its top images, without
a noise mask (with one, detect.py writes them)."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake, uses_jax=False)

from gex_core.workflow.stages.label_issues import gallery_title, run_label_issues  # noqa: E402

run_label_issues(
    data_path=snakemake.input.data,
    labels_path=snakemake.input.labels,
    scores_path=snakemake.input.scores,
    predictions_path=snakemake.input.predictions,
    graded=snakemake.params.graded,
    count=snakemake.params.images,
    title=gallery_title(snakemake.wildcards.method, snakemake.wildcards.seed),
    table_path=snakemake.output.table,
    gallery_path=snakemake.output.figure,
)
job.finish()
