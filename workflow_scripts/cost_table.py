"""Cost per method and per rule, from the Snakemake benchmark files of this run."""

from gex_core.jobenv import start_job

start_job(snakemake.log[0])

from gex_core.stages.evaluate import run_cost_tables  # noqa: E402

run_cost_tables(
    benchmarks=snakemake.params.benchmarks,
    forward_files=list(snakemake.params.forward_files),
    method_table=snakemake.output.methods,
    rule_table=snakemake.output.rules,
)
