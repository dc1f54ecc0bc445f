"""One method over seeds: the aggregated label-issue table and its top rows."""

from gex_core.workflow.jobenv import begin_job

job = begin_job(snakemake, uses_jax=False)

from gex_core.workflow.stages.label_issues import run_label_issue_summary  # noqa: E402

table = run_label_issue_summary(
    data_path=snakemake.input.data,
    labels_paths=snakemake.input.labels,
    scores_paths=snakemake.input.scores,
    predictions_paths=snakemake.input.predictions,
    graded=snakemake.params.graded,
    top=snakemake.params.top,
    table_path=snakemake.output.table,
    top_path=snakemake.output.top,
)
seeds = int(table.seeds.iloc[0])
print(f"flagged in all {seeds} seeds: {int((table.flagged_seeds == seeds).sum())}")
job.finish()
