# One scoring job per (method, hyperparameters); inputs come from the method registry.
# With shard_size set, shardable methods score row ranges in parallel jobs instead
# (influence_shard) and influence_gather merges them into the same scores.npz.

SCORING_INPUTS = dict(
    data=paths.pattern("data"),
    labels=paths.pattern("labels"),
    model=paths.pattern("model"),
    trajectory=paths.pattern("trajectory"),
    record=paths.pattern("record"),
    losses=paths.pattern("pretrained_losses"),
    history=paths.pattern("history"),
    chains=chain_files,
)
SCORING_PARAMS = dict(
    hparams=method_hparams,
    model=config["model"],
    recipe=config["pretrain"],
    hp=lambda wc: get_method(wc.method).applicable(config["influence"][wc.method]),
    eval_batch_size=config["eval_batch_size"],
    queries=config["queries"],
    code=method_code,
)


rule influence:
    input:
        **SCORING_INPUTS,
    output:
        scores=paths.pattern("scores"),
        timing=paths.pattern("timing"),
    log:
        paths.log("scores"),
    benchmark:
        paths.benchmark("scores")
    wildcard_constraints:
        method=exactly(*UNSHARDED),
    conda:
        "../envs/gex.yaml"
    threads: 1
    resources:
        gpu=GPU,
    params:
        **SCORING_PARAMS,
    script:
        "../workflow_scripts/influence.py"


rule influence_shard:
    input:
        **SCORING_INPUTS,
    output:
        scores=paths.pattern("shard_scores"),
        timing=paths.pattern("shard_timing"),
    log:
        paths.log("shard_scores"),
    benchmark:
        paths.benchmark("shard_scores")
    wildcard_constraints:
        method=exactly(*SHARDED),
        size=exactly(config["shard_size"]),
        shard=r"\d+",
    conda:
        "../envs/gex.yaml"
    threads: 1
    resources:
        gpu=GPU,
    params:
        **SCORING_PARAMS,
    script:
        "../workflow_scripts/influence.py"


rule influence_gather:
    input:
        data=paths.pattern("data"),
        shards=shard_outputs("shard_scores"),
        timings=shard_outputs("shard_timing"),
    output:
        scores=paths.pattern("scores"),
        timing=paths.pattern("timing"),
    log:
        paths.log("scores"),
    benchmark:
        paths.benchmark("scores")
    wildcard_constraints:
        method=exactly(*SHARDED),
    # merging shard files is quick: no cluster round trip
    localrule: True
    conda:
        "../envs/gex.yaml"
    threads: 1
    params:
        hparams=method_hparams,
        code=code("influence_gather.py"),
    script:
        "../workflow_scripts/influence_gather.py"
