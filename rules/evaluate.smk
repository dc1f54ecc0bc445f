# Mislabel detection per method and seed, then tables and plots over seeds.


rule detect:
    input:
        scores="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/scores.npz",
        labels=labels_file,
    output:
        metrics="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/detection.json",
        histogram="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/histogram.png",
        curves="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/curves.png",
    log:
        "logs/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}.detect.log",
    benchmark:
        "benchmarks/out/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/detection.json.tsv"
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
        table="results/{dataset}/noise-{noise}/{model}/{train}/summary/detection.tsv",
        plot="results/{dataset}/noise-{noise}/{model}/{train}/summary/detection.png",
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
        metrics=detection_files,
        timing=lambda wc: [f for files in TIMING.values() for f in files],
    output:
        methods="results/{dataset}/noise-{noise}/{model}/{train}/summary/cost.tsv",
        rules="results/{dataset}/noise-{noise}/{model}/{train}/summary/rule_cost.tsv",
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
