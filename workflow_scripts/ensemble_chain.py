"""Run one geometric-ensemble chain (S fine-tuning stages) from the pretrained model."""

from gex_core.jobenv import begin_job

job = begin_job(snakemake)

from gex_core.stages.ensemble import run_ensemble_chain  # noqa: E402

run_ensemble_chain(
    data_path=snakemake.input.data,
    model_name=snakemake.params.model,
    labels_path=snakemake.input.labels,
    model_path=snakemake.input.model,
    seed=int(snakemake.wildcards.seed),
    chain=int(snakemake.wildcards.chain),
    recipe=snakemake.params.recipe,
    pretrain_recipe=snakemake.params.pretrain_recipe,
    eval_batch_size=snakemake.params.eval_batch_size,
    outputs=dict(snakemake.output.items()),
    calibration_path=snakemake.input.calibration or None,
    resume=job.resume,
)
job.finish()
