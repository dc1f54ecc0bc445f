# The data set's fixed split (once), then noisy labels and the noise mask per
# (noise setting, seed).


rule dataset:
    input:
        data_files,
    output:
        data=paths.pattern("data"),
    log:
        paths.log("data"),
    benchmark:
        paths.benchmark("data")
    conda:
        "../envs/gex.yaml"
    threads: 1
    params:
        dataset=config["dataset"],
        data_dir=config["data_dir"],
        data_file=config["data_file"],
        # only a folder without test/ reads it: other data sets do not rerun on it
        test_fraction=(
            config["test_fraction"] if config["dataset"] == "folder" else None
        ),
        validation_fraction=config["validation_fraction"],
        code=dataset_code(),
    script:
        "../workflow_scripts/make_dataset.py"


rule labels:
    input:
        data=paths.pattern("data"),
        human=human_label_files,
    output:
        labels=paths.pattern("labels"),
        summary=paths.pattern("labels_summary"),
    log:
        paths.log("labels"),
    benchmark:
        paths.benchmark("labels")
    # under a second of NumPy: not worth a cluster job
    localrule: True
    conda:
        "../envs/gex.yaml"
    threads: 1
    params:
        noise=config["noise"],
        data_dir=config["data_dir"],
        code=labels_code(),
    script:
        "../workflow_scripts/make_labels.py"
