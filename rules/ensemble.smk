# GEX geometric ensemble: one job per chain, so chains run in parallel.


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
        recipe=config["ensemble"],
        pretrain_recipe=config["pretrain"],
        eval_batch_size=config["eval_batch_size"],
        code=code("calibrate.py"),
    script:
        "../workflow_scripts/calibrate.py"


rule ensemble_chain:
    input:
        data="results/{dataset}/data.npz",
        labels=labels_file,
        model=pretrained("model.msgpack"),
        calibration=calibration_input,
    output:
        losses="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/ensemble/{ensemble}/chain{chain}.npz",
        members="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/ensemble/{ensemble}/chain{chain}.msgpack",
    log:
        "logs/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/ensemble/{ensemble}/chain{chain}.log",
    benchmark:
        "benchmarks/out/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/ensemble/{ensemble}/chain{chain}.npz.tsv"
    conda:
        "../envs/gex.yaml"
    threads: 1
    resources:
        gpu=GPU,
    params:
        check=lambda wc: expect(wc, ensemble=ENSEMBLE),
        model=config["model"],
        recipe=config["ensemble"],
        pretrain_recipe=config["pretrain"],
        eval_batch_size=config["eval_batch_size"],
        code=code("ensemble_chain.py"),
    script:
        "../workflow_scripts/ensemble_chain.py"
