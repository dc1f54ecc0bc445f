"""Score every training sample with one influence method from the registry."""

from gex_core.jobenv import start_job

start_job(snakemake.log[0])

from gex_core.influence.inputs import MethodInputs  # noqa: E402
from gex_core.stages.influence import run_influence  # noqa: E402

inputs = MethodInputs(
    data_path=snakemake.input.data,
    labels_path=snakemake.input.labels,
    pretrain_dir=snakemake.params.pretrain_dir,
    model_name=snakemake.params.model,
    seed=int(snakemake.wildcards.seed),
    eval_batch_size=snakemake.params.eval_batch_size,
    recipe=snakemake.params.recipe,
    chain_paths=tuple(snakemake.input.chains),
)
run_influence(
    method=snakemake.wildcards.method,
    hp=snakemake.params.hp,
    inputs=inputs,
    outputs=dict(snakemake.output.items()),
)
