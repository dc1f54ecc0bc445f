"""Pretrain on the noisy labels; save model, trajectory, per-sample record and history."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake)

from gex_core.workflow.stages.pretrain import run_pretraining  # noqa: E402

run_pretraining(
    data_path=snakemake.input.data,
    model_name=snakemake.params.model,
    labels_path=snakemake.input.labels,
    seed=int(snakemake.wildcards.seed),
    recipe=snakemake.params.recipe,
    eval_batch_size=snakemake.params.eval_batch_size,
    outputs=dict(snakemake.output.items()),
    resume=job.resume,
)
job.finish()
