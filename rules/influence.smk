# One scoring job per (method, hyperparameters); inputs come from the method registry.


rule influence:
    input:
        data="results/{dataset}/data.npz",
        labels=labels_file,
        model=pretrained("model.msgpack"),
        trajectory=pretrained("trajectory.msgpack"),
        record=pretrained("record.npz"),
        losses=pretrained("losses.npz"),
        history=pretrained("history.tsv"),
        chains=chain_files,
    output:
        scores="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/scores.npz",
        timing="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/timing.json",
    log:
        "logs/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}.log",
    benchmark:
        "benchmarks/out/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/scores.npz.tsv"
    conda:
        "../envs/gex.yaml"
    threads: 1
    resources:
        gpu=GPU,
    params:
        check=lambda wc: expect(wc, hparams=METHOD_HPARAMS.get(wc.method)),
        model=config["model"],
        recipe=config["pretrain"],
        pretrain_dir=lambda wc: paths.PRETRAIN.format(**wc),
        hp=lambda wc: config["influence"][wc.method],
        eval_batch_size=config["eval_batch_size"],
        queries=config["queries"],
        code=method_code,
    script:
        "../workflow_scripts/influence.py"
