"""Choose GEX's fine-tuning learning rate from pilot stages, without the noise mask."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake)

from gex_core.workflow.stages.calibration import run_calibration  # noqa: E402

print(
    run_calibration(
        data_path=snakemake.input.data,
        labels_path=snakemake.input.labels,
        model_name=snakemake.params.model,
        model_path=snakemake.input.model,
        seed=int(snakemake.wildcards.seed),
        recipe=snakemake.params.recipe,
        chains=snakemake.params.chains,
        pretrain_recipe=snakemake.params.pretrain_recipe,
        eval_batch_size=snakemake.params.eval_batch_size,
        outputs=dict(snakemake.output.items()),
    )
)
job.finish()
