"""Score every training sample with one influence method from the registry."""

from gex_core.jobenv import run_inputs, start_job

start_job(snakemake.log[0])

from gex_core.stages.influence import run_influence  # noqa: E402

run_influence(
    method=snakemake.wildcards.method,
    hp=snakemake.params.hp,
    inputs=run_inputs(
        snakemake,
        chain_paths=tuple(snakemake.input.chains),
        queries=int(snakemake.params.queries),
    ),
    outputs=dict(snakemake.output.items()),
)
