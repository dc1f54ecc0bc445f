# One scoring job per (method, hyperparameters); inputs come from the method registry.
# With shard_size set, shardable methods score row ranges in parallel jobs instead
# (influence_shard) and influence_gather merges them into the same scores.npz.


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
    wildcard_constraints:
        method=any_of(UNSHARDED),
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
        hp=lambda wc: get_method(wc.method).applicable(config["influence"][wc.method]),
        eval_batch_size=config["eval_batch_size"],
        queries=config["queries"],
        code=method_code,
    script:
        "../workflow_scripts/influence.py"


rule influence_shard:
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
        scores="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/shards-{size}/shard{shard}.npz",
        timing="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/shards-{size}/shard{shard}.json",
    log:
        "logs/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/shards-{size}/shard{shard}.log",
    benchmark:
        "benchmarks/out/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/shards-{size}/shard{shard}.npz.tsv"
    wildcard_constraints:
        method=any_of(SHARDED),
        size=r"\d+",
        shard=r"\d+",
    conda:
        "../envs/gex.yaml"
    threads: 1
    resources:
        gpu=GPU,
    params:
        check=lambda wc: expect(
            wc, hparams=METHOD_HPARAMS.get(wc.method), size=str(config["shard_size"])
        ),
        model=config["model"],
        recipe=config["pretrain"],
        pretrain_dir=lambda wc: paths.PRETRAIN.format(**wc),
        hp=lambda wc: get_method(wc.method).applicable(config["influence"][wc.method]),
        eval_batch_size=config["eval_batch_size"],
        queries=config["queries"],
        code=method_code,
    script:
        "../workflow_scripts/influence.py"


rule influence_gather:
    input:
        data="results/{dataset}/data.npz",
        shards=shard_outputs("npz"),
        timings=shard_outputs("json"),
    output:
        scores="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/scores.npz",
        timing="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/timing.json",
    log:
        "logs/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}.log",
    benchmark:
        "benchmarks/out/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/scores.npz.tsv"
    wildcard_constraints:
        method=any_of(SHARDED),
    # merging shard files is quick: no cluster round trip
    localrule: True
    conda:
        "../envs/gex.yaml"
    threads: 1
    params:
        check=lambda wc: expect(wc, hparams=METHOD_HPARAMS.get(wc.method)),
        code=code("influence_gather.py"),
    script:
        "../workflow_scripts/influence_gather.py"
