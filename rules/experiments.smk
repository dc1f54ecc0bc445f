# What the scores are for: relabel the flagged samples, prune the training set; each
# retrains from scratch with the pretraining recipe. Plus per-method figures.

RETRAINING_PARAMS = dict(
    model=config["model"],
    recipe=config["pretrain"],
    eval_batch_size=config["eval_batch_size"],
)


rule relabel:
    input:
        data=paths.pattern("data"),
        labels=paths.pattern("labels"),
        model=paths.pattern("model"),
        scores=paths.pattern("scores"),
    output:
        result=paths.pattern("relabel"),
    log:
        paths.log("relabel"),
    benchmark:
        paths.benchmark("relabel")
    conda:
        "../envs/gex.yaml"
    threads: 1
    resources:
        gpu=GPU,
    params:
        **RETRAINING_PARAMS,
        graded=paths.has_noise(config),
        code=code("relabel.py"),
    script:
        "../workflow_scripts/relabel.py"


rule relabel_baseline:
    input:
        data=paths.pattern("data"),
        labels=paths.pattern("labels"),
        model=paths.pattern("model"),
    output:
        result=paths.pattern("relabel_baseline"),
    log:
        paths.log("relabel_baseline"),
    benchmark:
        paths.benchmark("relabel_baseline")
    conda:
        "../envs/gex.yaml"
    threads: 1
    resources:
        gpu=GPU,
    params:
        **RETRAINING_PARAMS,
        code=code("relabel_baseline.py"),
    script:
        "../workflow_scripts/relabel_baseline.py"


rule prune:
    input:
        data=paths.pattern("data"),
        labels=paths.pattern("labels"),
        model=paths.pattern("model"),
        scores=paths.pattern("scores"),
    output:
        result=paths.pattern("prune"),
    log:
        paths.log("prune"),
    benchmark:
        paths.benchmark("prune")
    conda:
        "../envs/gex.yaml"
    threads: 1
    resources:
        gpu=GPU,
    params:
        **RETRAINING_PARAMS,
        graded=paths.has_noise(config),
        code=code("prune.py"),
    script:
        "../workflow_scripts/prune.py"


# With a noise mask the detect job (rules/evaluate.smk) also writes these two files:
# one job per method and seed instead of two (each light job costs ~1 s to start).
if not paths.has_noise(config):

    rule label_issues:
        input:
            **LABEL_ISSUE_INPUTS,
        output:
            **LABEL_ISSUE_OUTPUTS,
        log:
            paths.log("label_issues"),
        localrule: True
        conda:
            "../envs/gex.yaml"
        params:
            images=config["figures"]["gallery"],
            graded=False,
            code=code("label_issues.py"),
        script:
            "../workflow_scripts/label_issues.py"


rule examples:
    input:
        data=paths.pattern("data"),
        labels=paths.pattern("labels"),
        scores=paths.pattern("scores"),
    output:
        figure=report(
            paths.pattern("examples"),
            caption="../report/examples.rst",
            category="Train x test influence",
            subcategory="{method}",
            labels={"method": "{method}", "seed": "{seed}", "figure": "examples"},
        ),
    log:
        paths.log("examples"),
    localrule: True
    conda:
        "../envs/gex.yaml"
    params:
        queries=config["figures"]["examples"],
        per_side=config["figures"]["per_side"],
        code=code("examples.py"),
    script:
        "../workflow_scripts/examples.py"
