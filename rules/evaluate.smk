# Mislabel detection per method and seed, then tables and plots over seeds.


# With a noise mask: detection against it, and the label-issue table and gallery
# (rules/experiments.smk's label_issues writes those two without one), in one job.
if paths.has_noise(config):

    rule detect:
        input:
            **LABEL_ISSUE_INPUTS,
        output:
            **LABEL_ISSUE_OUTPUTS,
            metrics=paths.pattern("detection"),
            histogram=report(
                paths.pattern("histogram"),
                caption="../report/histogram.rst",
                category="Detection per seed",
                subcategory="{method}",
                labels={"method": "{method}", "seed": "{seed}", "figure": "histogram"},
            ),
            curves=report(
                paths.pattern("curves"),
                caption="../report/curves.rst",
                category="Detection per seed",
                subcategory="{method}",
                labels={
                    "method": "{method}",
                    "seed": "{seed}",
                    "figure": "ROC and PR",
                },
            ),
        log:
            paths.log("detection"),
        benchmark:
            paths.benchmark("detection")
        # metrics and three small plots in seconds: a cluster job would mostly wait
        localrule: True
        conda:
            "../envs/gex.yaml"
        threads: 1
        params:
            images=config["figures"]["gallery"],
            code=code("detect.py"),
        script:
            "../workflow_scripts/detect.py"


rule summarize_detection:
    input:
        metrics=detection_files,
    output:
        table=report(
            paths.pattern("detection_table"),
            caption="../report/detection_table.rst",
            category="Detection",
        ),
        plot=report(
            paths.pattern("detection_plot"),
            caption="../report/detection.rst",
            category="Detection",
        ),
    log:
        paths.log("detection_table"),
    localrule: True
    conda:
        "../envs/gex.yaml"
    params:
        methods=[m for m in config["methods"] for _ in config["seeds"]],
        seeds=[s for _ in config["methods"] for s in config["seeds"]],
        code=code("summarize_detection.py"),
    script:
        "../workflow_scripts/summarize_detection.py"


rule cost_table:
    input:
        # every job whose benchmark the tables read has finished
        metrics=detection_files,
        timing=lambda wc: [f for files in TIMING.values() for f in files],
        experiments=lambda wc: paths.relabel_files(config)
        + paths.prune_files(config)
        + paths.relabel_baseline_files(config),
    output:
        methods=report(
            paths.pattern("cost_table"),
            caption="../report/cost.rst",
            category="Cost",
        ),
        rules=report(
            paths.pattern("rule_cost_table"),
            caption="../report/rule_cost.rst",
            category="Cost",
        ),
    log:
        paths.log("cost_table"),
    localrule: True
    conda:
        "../envs/gex.yaml"
    params:
        benchmarks=paths.benchmark_files(config),
        timing=TIMING,
        chains=CHAINS,
        code=code("cost_table.py"),
    script:
        "../workflow_scripts/cost_table.py"


rule summarize_relabel:
    input:
        relabel=lambda wc: paths.relabel_files(config),
        baselines=lambda wc: paths.relabel_baseline_files(config),
        histories=lambda wc: paths.per_seed(config, "history"),
    output:
        table=report(
            paths.pattern("relabel_table"),
            caption="../report/relabel_table.rst",
            category="Relabel",
        ),
        plot=report(
            paths.pattern("relabel_plot"),
            caption="../report/relabel.rst",
            category="Relabel",
        ),
    log:
        paths.log("relabel_table"),
    localrule: True
    conda:
        "../envs/gex.yaml"
    params:
        code=code("summarize_relabel.py"),
    script:
        "../workflow_scripts/summarize_relabel.py"


rule summarize_prune:
    input:
        prune=lambda wc: paths.prune_files(config),
        histories=lambda wc: paths.per_seed(config, "history"),
    output:
        table=report(
            paths.pattern("prune_table"),
            caption="../report/prune_table.rst",
            category="Pruning",
        ),
        plot=report(
            paths.pattern("prune_plot"),
            caption="../report/prune.rst",
            category="Pruning",
        ),
    log:
        paths.log("prune_table"),
    localrule: True
    conda:
        "../envs/gex.yaml"
    params:
        code=code("summarize_prune.py"),
    script:
        "../workflow_scripts/summarize_prune.py"


rule rank_agreement:
    input:
        scores=lambda wc: paths.per_method(config, "scores", config["methods"]),
    output:
        table=report(
            paths.pattern("rank_agreement_table"),
            caption="../report/rank_agreement_table.rst",
            category="Method agreement",
        ),
        plot=report(
            paths.pattern("rank_agreement_plot"),
            caption="../report/rank_agreement.rst",
            category="Method agreement",
        ),
    log:
        paths.log("rank_agreement_table"),
    localrule: True
    conda:
        "../envs/gex.yaml"
    params:
        methods=[m for m in config["methods"] for _ in config["seeds"]],
        seeds=[s for _ in config["methods"] for s in config["seeds"]],
        code=code("rank_agreement.py"),
    script:
        "../workflow_scripts/rank_agreement.py"


rule summarize_label_issues:
    input:
        data=paths.pattern("data"),
        labels=lambda wc: paths.per_seed(config, "labels"),
        scores=lambda wc: paths.per_method(config, "scores", [wc.method]),
        predictions=lambda wc: paths.per_seed(config, "predictions"),
    output:
        table=paths.pattern("label_issues_table"),
        top=report(
            paths.pattern("label_issues_top"),
            caption="../report/label_issues.rst",
            category="Label issues",
            subcategory="{method}",
            labels={"method": "{method}", "table": "top over seeds"},
        ),
    log:
        paths.log("label_issues_table"),
    localrule: True
    conda:
        "../envs/gex.yaml"
    params:
        graded=paths.has_noise(config),
        top=config["figures"]["gallery"],
        code=code("summarize_label_issues.py"),
    script:
        "../workflow_scripts/summarize_label_issues.py"
