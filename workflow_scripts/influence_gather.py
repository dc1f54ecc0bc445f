"""Merge one method's shard scores into the scores of the whole training set."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake, uses_jax=False)

from gex_core.workflow.stages.influence import run_gather  # noqa: E402

run_gather(
    shard_scores=list(snakemake.input.shards),
    shard_timings=list(snakemake.input.timings),
    data_path=snakemake.input.data,
    outputs=dict(snakemake.output.items()),
)
job.finish()
