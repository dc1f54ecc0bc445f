"""Noisy training labels and the noise mask for one (data set, noise, seed)."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake, uses_jax=False)

from gex_core.data.load import make_noisy_labels  # noqa: E402
from gex_core.workflow.artifacts import read_dataset  # noqa: E402
from gex_core.workflow.io import write_json, write_npz  # noqa: E402

seed = int(snakemake.wildcards.seed)
noise = snakemake.params.noise
data = read_dataset(snakemake.input.data)
labels = make_noisy_labels(
    data.y_train, noise, data.num_classes, seed, snakemake.params.data_dir
)
write_npz(
    snakemake.output.labels, noisy=labels.noisy, clean=labels.clean, mask=labels.mask
)
summary = {
    **noise,
    "seed": seed,
    "num_train": int(labels.mask.size),
    "num_noisy": int(labels.mask.sum()),
    "measured_noise_rate": float(labels.mask.mean()),
}
write_json(snakemake.output.summary, summary)
print(summary)
job.finish()
