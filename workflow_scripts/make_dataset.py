"""Load the configured data set once and store its fixed train/test split."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake, uses_jax=False)

from gex_core.data.datasets import with_validation  # noqa: E402
from gex_core.data.load import load_dataset  # noqa: E402
from gex_core.workflow.artifacts import save_dataset  # noqa: E402

data = with_validation(
    load_dataset(
        snakemake.params.dataset,
        snakemake.params.data_dir,
        snakemake.params.data_file,
        snakemake.params.test_fraction,
    ),
    snakemake.params.validation_fraction,
)
save_dataset(snakemake.output.data, data)
print(
    f"{snakemake.wildcards.dataset}: {data.x_train.shape[0]} train, "
    f"{data.x_val.shape[0]} validation, {data.x_test.shape[0]} test, images {data.x_train.shape[1:]}, "
    f"{data.num_classes} classes"
    + (f" ({', '.join(data.class_names)})" if data.class_names else "")
)
job.finish()
