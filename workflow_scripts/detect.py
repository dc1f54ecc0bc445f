"""Mislabel detection of one method's self-influence against the noise mask."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake, uses_jax=False)

from gex_core.workflow.stages.evaluate import run_detection  # noqa: E402

wc = snakemake.wildcards
metrics = run_detection(
    scores_path=snakemake.input.scores,
    labels_path=snakemake.input.labels,
    title=f"{wc.method} ({wc.hparams}), {wc.dataset} noise {wc.noise}, seed {wc.seed}",
    outputs=dict(snakemake.output.items()),
)
print(metrics)
job.finish()
