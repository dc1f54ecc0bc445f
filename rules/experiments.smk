# What the scores are for: relabel the flagged samples, prune the training set; each
# retrains from scratch with the pretraining recipe. Plus per-method figures.


rule relabel:
    input:
        data="results/{dataset}/data.npz",
        labels=labels_file,
        model=pretrained("model.msgpack"),
        scores=scores_file,
    output:
        result="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/relabel-{mode}.json",
    log:
        "logs/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}.relabel-{mode}.log",
    benchmark:
        "benchmarks/out/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/relabel-{mode}.json.tsv"
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
        eval_batch_size=config["eval_batch_size"],
        code=code("relabel.py"),
    script:
        "../workflow_scripts/relabel.py"


rule relabel_baseline:
    input:
        data="results/{dataset}/data.npz",
        labels=labels_file,
        model=pretrained("model.msgpack"),
    output:
        result="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/relabel/{setting}.json",
    log:
        "logs/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/relabel/{setting}.log",
    benchmark:
        "benchmarks/out/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/relabel/{setting}.json.tsv"
    conda:
        "../envs/gex.yaml"
    threads: 1
    resources:
        gpu=GPU,
    params:
        check=lambda wc: expect(wc),
        model=config["model"],
        recipe=config["pretrain"],
        pretrain_dir=lambda wc: paths.PRETRAIN.format(**wc),
        eval_batch_size=config["eval_batch_size"],
        code=code("relabel_baseline.py"),
    script:
        "../workflow_scripts/relabel_baseline.py"


rule prune:
    input:
        data="results/{dataset}/data.npz",
        labels=labels_file,
        model=pretrained("model.msgpack"),
        scores=scores_file,
    output:
        result="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/prune-{order}-f{fraction}.json",
    log:
        "logs/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}.prune-{order}-f{fraction}.log",
    benchmark:
        "benchmarks/out/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/prune-{order}-f{fraction}.json.tsv"
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
        eval_batch_size=config["eval_batch_size"],
        code=code("prune.py"),
    script:
        "../workflow_scripts/prune.py"


rule gallery:
    input:
        data="results/{dataset}/data.npz",
        labels=labels_file,
        scores=scores_file,
    output:
        figure=report(
            "results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/gallery.png",
            caption="../report/gallery.rst",
            category="Flagged samples",
            subcategory="{method}",
            labels={"method": "{method}", "seed": "{seed}", "figure": "gallery"},
        ),
    log:
        "logs/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}.gallery.log",
    localrule: True
    conda:
        "../envs/gex.yaml"
    params:
        images=config["figures"]["gallery"],
        code=code("gallery.py"),
    script:
        "../workflow_scripts/gallery.py"


rule examples:
    input:
        data="results/{dataset}/data.npz",
        labels=labels_file,
        scores=scores_file,
    output:
        figure=report(
            "results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}/examples.png",
            caption="../report/examples.rst",
            category="Train x test influence",
            subcategory="{method}",
            labels={"method": "{method}", "seed": "{seed}", "figure": "examples"},
        ),
    log:
        "logs/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/influence/{method}/{hparams}.examples.log",
    localrule: True
    conda:
        "../envs/gex.yaml"
    params:
        queries=config["figures"]["examples"],
        per_side=config["figures"]["per_side"],
        code=code("examples.py"),
    script:
        "../workflow_scripts/examples.py"
