"""Run a job's geometric-ensemble chains (S fine-tuning stages each) from the
pretrained model: chains first..last of the file name."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake)

from gex_core.workflow.stages.ensemble import run_ensemble_chains  # noqa: E402

run_ensemble_chains(
    data_path=snakemake.input.data,
    model_name=snakemake.params.model,
    labels_path=snakemake.input.labels,
    model_path=snakemake.input.model,
    seed=int(snakemake.wildcards.seed),
    chains=snakemake.params.chains,
    recipe=snakemake.params.recipe,
    pretrain_recipe=snakemake.params.pretrain_recipe,
    eval_batch_size=snakemake.params.eval_batch_size,
    outputs=dict(snakemake.output.items()),
    calibration_path=snakemake.input.calibration or None,
    pilots_path=snakemake.input.pilots or None,
    # how, not what: changing it reruns nothing (float rounding only)
    batched=bool(snakemake.config["ensemble"]["batched"]),
    resume=job.resume,
)
job.finish()
