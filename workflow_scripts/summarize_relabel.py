"""Test accuracy after relabeling over seeds: every method against the baselines."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake, uses_jax=False)

from gex_core.workflow.stages.summaries import run_relabel_summary  # noqa: E402

print(
    run_relabel_summary(
        method_files=list(snakemake.input.relabel),
        baseline_files=list(snakemake.input.baselines),
        history_files=list(snakemake.input.histories),
        title=f"{snakemake.wildcards.dataset}: test accuracy after relabeling",
        table=snakemake.output.table,
        plot=snakemake.output.plot,
    ).to_string()
)
job.finish()
