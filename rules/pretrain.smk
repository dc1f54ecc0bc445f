# Pretraining: final model, trajectory checkpoints, per-sample record, the model's class
# probabilities on the training images, history, plot.


rule pretrain:
    input:
        data=paths.pattern("data"),
        labels=paths.pattern("labels"),
    output:
        model=paths.pattern("model"),
        trajectory=paths.pattern("trajectory"),
        record=paths.pattern("record"),
        losses=paths.pattern("pretrained_losses"),
        predictions=paths.pattern("predictions"),
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
