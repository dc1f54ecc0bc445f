# Pretraining: final model, trajectory checkpoints, per-sample record, history, plot;
# then the model's class probabilities on the training images.


rule pretrain:
    input:
        data=paths.pattern("data"),
        labels=paths.pattern("labels"),
    output:
        model=paths.pattern("model"),
        trajectory=paths.pattern("trajectory"),
        record=paths.pattern("record"),
        losses=paths.pattern("pretrained_losses"),
        history=paths.pattern("history"),
        curve=report(
            paths.pattern("learning_curve"),
            caption="../report/learning_curve.rst",
            category="Training",
            labels={"seed": "{seed}", "figure": "learning curve"},
        ),
    log:
        paths.log("model"),
    benchmark:
        paths.benchmark("model")
    conda:
        "../envs/gex.yaml"
    threads: 1
    resources:
        gpu=GPU,
    params:
        model=config["model"],
        recipe=config["pretrain"],
        eval_batch_size=config["eval_batch_size"],
        code=code("pretrain.py"),
    script:
        "../workflow_scripts/pretrain.py"


rule predictions:
    input:
        data=paths.pattern("data"),
        labels=paths.pattern("labels"),
        model=paths.pattern("model"),
    output:
        predictions=paths.pattern("predictions"),
    log:
        paths.log("predictions"),
    benchmark:
        paths.benchmark("predictions")
    conda:
        "../envs/gex.yaml"
    threads: 1
    resources:
        gpu=GPU,
    params:
        model=config["model"],
        recipe=config["pretrain"],
        eval_batch_size=config["eval_batch_size"],
        code=code("predictions.py"),
    script:
        "../workflow_scripts/predictions.py"
