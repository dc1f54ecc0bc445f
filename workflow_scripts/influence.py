"""Score the training set (or one shard of it) with one influence method."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake)

from gex_core.workflow.artifacts import stored_train_size  # noqa: E402
from gex_core.workflow.method_inputs import job_method_inputs  # noqa: E402
from gex_core.workflow.shards import shard_rows  # noqa: E402
from gex_core.workflow.stages.influence import run_influence  # noqa: E402

wildcards = snakemake.wildcards
shard = None
if hasattr(wildcards, "shard"):
    shard = shard_rows(
        int(wildcards.shard),
        int(wildcards.size),
        stored_train_size(snakemake.input.data),
    )
run_influence(
    method=wildcards.method,
    hp=snakemake.params.hp,
    inputs=job_method_inputs(
        snakemake,
        chain_paths=tuple(snakemake.input.chains),
        queries=int(snakemake.params.queries),
        shard=shard,
        resume=job.resume,
    ),
    outputs=dict(snakemake.output.items()),
)
job.finish()
