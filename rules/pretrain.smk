# Pretraining: final model, trajectory checkpoints, per-sample record, history, plot.


rule pretrain:
    input:
        data="results/{dataset}/data.npz",
        labels=labels_file,
    output:
        model="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/pretrain/model.msgpack",
        trajectory="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/pretrain/trajectory.msgpack",
        record="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/pretrain/record.npz",
        losses="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/pretrain/losses.npz",
        history="results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/pretrain/history.tsv",
        curve=report(
            "results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/pretrain/learning_curve.png",
            caption="../report/learning_curve.rst",
            category="Training",
            labels={"seed": "{seed}", "figure": "learning curve"},
        ),
    log:
        "logs/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/pretrain.log",
    benchmark:
        "benchmarks/out/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/pretrain/model.msgpack.tsv"
    conda:
        "../envs/gex.yaml"
    threads: 1
    resources:
        gpu=GPU,
    params:
        check=lambda wc: expect(wc),
        model=config["model"],
        recipe=config["pretrain"],
        eval_batch_size=config["eval_batch_size"],
        code=code("pretrain.py"),
    script:
        "../workflow_scripts/pretrain.py"
