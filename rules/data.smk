# The data set's fixed split (once), then noisy labels and the noise mask per
# (noise setting, seed).


rule dataset:
    input:
        data_files,
    output:
        data="results/{dataset}/data.npz",
    log:
        "logs/{dataset}/data.log",
    benchmark:
        "benchmarks/out/{dataset}/data.npz.tsv"
    conda:
        "../envs/gex.yaml"
    threads: 1
    params:
        check=lambda wc: expect(wc),
        dataset=config["dataset"],
        data_dir=config["data_dir"],
        data_file=config["data_file"],
        code=code("make_dataset.py"),
    script:
        "../workflow_scripts/make_dataset.py"


rule labels:
    input:
        data="results/{dataset}/data.npz",
        human=human_label_files,
    output:
        labels="results/{dataset}/noise-{noise}/labels/seed{seed}.npz",
        summary="results/{dataset}/noise-{noise}/labels/seed{seed}.json",
    log:
        "logs/{dataset}/noise-{noise}/labels/seed{seed}.log",
    benchmark:
        "benchmarks/out/{dataset}/noise-{noise}/labels/seed{seed}.npz.tsv"
    # under a second of NumPy: not worth a cluster job
    localrule: True
    conda:
        "../envs/gex.yaml"
    threads: 1
    params:
        check=lambda wc: expect(wc),
        noise=config["noise"],
        data_dir=config["data_dir"],
        code=code("make_labels.py"),
    script:
        "../workflow_scripts/make_labels.py"
