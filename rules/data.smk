# Noisy labels and the noise mask, one artifact per (data set, noise setting, seed).


rule labels:
    output:
        labels="results/{dataset}/noise-{noise}/labels/seed{seed}.npz",
        summary="results/{dataset}/noise-{noise}/labels/seed{seed}.json",
    log:
        "logs/{dataset}/noise-{noise}/labels/seed{seed}.log",
    benchmark:
        "benchmarks/out/{dataset}/noise-{noise}/labels/seed{seed}.tsv"
    conda:
        "../envs/gex.yaml"
    threads: 1
    params:
        check=lambda wc: expect(wc),
        dataset=config["dataset"],
        noise=config["noise"],
        code=code("make_labels.py"),
    script:
        "../workflow_scripts/make_labels.py"
