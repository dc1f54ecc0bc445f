"""The pretrained model's class probabilities on the training images, per seed."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake)

from gex_core.workflow.method_inputs import job_method_inputs  # noqa: E402
from gex_core.workflow.stages.predictions import run_predictions  # noqa: E402

probs = run_predictions(
    inputs=job_method_inputs(snakemake), output=snakemake.output.predictions
)
print(f"probabilities {probs.shape} of the pretrained model")
job.finish()
