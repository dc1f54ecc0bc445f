# GEX geometric ensemble: each job runs the chains first..last (ensemble.chains_per_job).


rule calibrate:
    input:
        data="results/{dataset}/data.npz",
        labels=labels_file,
        model=pretrained("model.msgpack"),
    output:
        record="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/ensemble/{ensemble}/calibration.json",
        plot="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/ensemble/{ensemble}/calibration.png",
    log:
        "logs/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/ensemble/{ensemble}/calibration.log",
    benchmark:
        "benchmarks/out/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/ensemble/{ensemble}/calibration.json.tsv"
    conda:
        "../envs/gex.yaml"
    threads: 1
    resources:
        gpu=GPU,
    params:
        check=lambda wc: expect(wc, ensemble=ENSEMBLE),
        model=config["model"],
        recipe=CHAIN_RECIPE,
        pretrain_recipe=config["pretrain"],
        eval_batch_size=config["eval_batch_size"],
        code=code("calibrate.py"),
    script:
        "../workflow_scripts/calibrate.py"


rule ensemble_chains:
    input:
        data="results/{dataset}/data.npz",
        labels=labels_file,
        model=pretrained("model.msgpack"),
        calibration=calibration_input,
    output:
        losses="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/ensemble/{ensemble}/chains{first}-{last}.npz",
        members="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/ensemble/{ensemble}/chains{first}-{last}.msgpack",
    log:
        "logs/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/ensemble/{ensemble}/chains{first}-{last}.log",
    benchmark:
        "benchmarks/out/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/ensemble/{ensemble}/chains{first}-{last}.npz.tsv"
    conda:
        "../envs/gex.yaml"
    threads: 1
    resources:
        gpu=GPU,
    params:
        check=lambda wc: expect(wc, ensemble=ENSEMBLE)
        and bool(paths.chain_range(wc.first, wc.last)),
        model=config["model"],
        recipe=CHAIN_RECIPE,
        pretrain_recipe=config["pretrain"],
        eval_batch_size=config["eval_batch_size"],
        code=code("ensemble_chains.py"),
    script:
        "../workflow_scripts/ensemble_chains.py"
