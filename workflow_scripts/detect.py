"""One method and seed against the noise mask: detection metrics and plots, and the
label-issue table and gallery graded by the mask (one job: each costs ~1 s to start)."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake, uses_jax=False)

from gex_core.workflow.stages.evaluate import run_detection  # noqa: E402
from gex_core.workflow.stages.label_issues import gallery_title, run_label_issues  # noqa: E402

wc = snakemake.wildcards
out = snakemake.output
metrics = run_detection(
    scores_path=snakemake.input.scores,
    labels_path=snakemake.input.labels,
    title=f"{wc.method} ({wc.hparams}), {wc.dataset} noise {wc.noise}, seed {wc.seed}",
    outputs=dict(metrics=out.metrics, histogram=out.histogram, curves=out.curves),
)
print(metrics)
run_label_issues(
    data_path=snakemake.input.data,
    labels_path=snakemake.input.labels,
    scores_path=snakemake.input.scores,
    predictions_path=snakemake.input.predictions,
    graded=True,
    count=snakemake.params.images,
    title=gallery_title(wc.method, wc.seed),
    table_path=out.table,
    gallery_path=out.figure,
)
job.finish()
