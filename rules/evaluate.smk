# Mislabel detection per method and seed, then tables and plots over seeds.


rule detect:
    input:
        scores="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/scores.npz",
        labels=labels_file,
    output:
        metrics="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/detection.json",
        histogram=report(
            "results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/histogram.png",
            caption="../report/histogram.rst",
            category="Detection per seed",
            subcategory="{method}",
            labels={"method": "{method}", "seed": "{seed}", "figure": "histogram"},
        ),
        curves=report(
            "results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/curves.png",
            caption="../report/curves.rst",
            category="Detection per seed",
            subcategory="{method}",
            labels={"method": "{method}", "seed": "{seed}", "figure": "ROC and PR"},
        ),
    log:
        "logs/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}.detect.log",
    benchmark:
        "benchmarks/out/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/detection.json.tsv"
    # metrics and two small plots in seconds: a cluster job would mostly wait
    localrule: True
    conda:
        "../envs/gex.yaml"
    threads: 1
    params:
        code=code("detect.py"),
    script:
        "../workflow_scripts/detect.py"


rule summarize_detection:
    input:
        metrics=detection_files,
    output:
        table=report(
            "results/{dataset}/noise-{noise}/{model}/{train}/summary/detection.tsv",
            caption="../report/detection_table.rst",
            category="Detection",
        ),
        plot=report(
            "results/{dataset}/noise-{noise}/{model}/{train}/summary/detection.png",
            caption="../report/detection.rst",
            category="Detection",
        ),
    log:
        "logs/{dataset}/noise-{noise}/{model}/{train}/summary/detection.log",
    localrule: True
    conda:
        "../envs/gex.yaml"
    params:
        check=lambda wc: expect(wc),
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
            "results/{dataset}/noise-{noise}/{model}/{train}/summary/cost.tsv",
            caption="../report/cost.rst",
            category="Cost",
        ),
        rules=report(
            "results/{dataset}/noise-{noise}/{model}/{train}/summary/rule_cost.tsv",
            caption="../report/rule_cost.rst",
            category="Cost",
        ),
    log:
        "logs/{dataset}/noise-{noise}/{model}/{train}/summary/cost.log",
    localrule: True
    conda:
        "../envs/gex.yaml"
    params:
        check=lambda wc: expect(wc),
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
        histories=lambda wc: paths.history_files(config),
    output:
        table=report(
            "results/{dataset}/noise-{noise}/{model}/{train}/summary/relabel.tsv",
            caption="../report/relabel_table.rst",
            category="Relabel",
        ),
        plot=report(
            "results/{dataset}/noise-{noise}/{model}/{train}/summary/relabel.png",
            caption="../report/relabel.rst",
            category="Relabel",
        ),
    log:
        "logs/{dataset}/noise-{noise}/{model}/{train}/summary/relabel.log",
    localrule: True
    conda:
        "../envs/gex.yaml"
    params:
        check=lambda wc: expect(wc),
        code=code("summarize_relabel.py"),
    script:
        "../workflow_scripts/summarize_relabel.py"


rule summarize_prune:
    input:
        prune=lambda wc: paths.prune_files(config),
        histories=lambda wc: paths.history_files(config),
    output:
        table=report(
            "results/{dataset}/noise-{noise}/{model}/{train}/summary/prune.tsv",
            caption="../report/prune_table.rst",
            category="Pruning",
        ),
        plot=report(
            "results/{dataset}/noise-{noise}/{model}/{train}/summary/prune.png",
            caption="../report/prune.rst",
            category="Pruning",
        ),
    log:
        "logs/{dataset}/noise-{noise}/{model}/{train}/summary/prune.log",
    localrule: True
    conda:
        "../envs/gex.yaml"
    params:
        check=lambda wc: expect(wc),
        code=code("summarize_prune.py"),
    script:
        "../workflow_scripts/summarize_prune.py"


rule rank_agreement:
    input:
        scores=lambda wc: [
            f"{paths.influence_dir(config, m, s)}/scores.npz"
            for m in config["methods"]
            for s in config["seeds"]
        ],
    output:
        table=report(
            "results/{dataset}/noise-{noise}/{model}/{train}/summary/rank_agreement.tsv",
            caption="../report/rank_agreement_table.rst",
            category="Method agreement",
        ),
        plot=report(
            "results/{dataset}/noise-{noise}/{model}/{train}/summary/rank_agreement.png",
            caption="../report/rank_agreement.rst",
            category="Method agreement",
        ),
    log:
        "logs/{dataset}/noise-{noise}/{model}/{train}/summary/rank_agreement.log",
    localrule: True
    conda:
        "../envs/gex.yaml"
    params:
        check=lambda wc: expect(wc),
        methods=[m for m in config["methods"] for _ in config["seeds"]],
        seeds=[s for _ in config["methods"] for s in config["seeds"]],
        code=code("rank_agreement.py"),
    script:
        "../workflow_scripts/rank_agreement.py"
