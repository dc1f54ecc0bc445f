"""Cost per method and per rule, from this run's benchmark and timing files."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake, uses_jax=False)

from gex_core.workflow.stages.evaluate import run_cost_tables  # noqa: E402

run_cost_tables(
    benchmarks=snakemake.params.benchmarks,
    timing=snakemake.params.timing,
    chains=snakemake.params.chains,
    method_table=snakemake.output.methods,
    rule_table=snakemake.output.rules,
)
job.finish()
