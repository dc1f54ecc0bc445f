# GEX geometric ensemble: each job runs the chains first..last (ensemble.chains_per_job).


rule calibrate:
    input:
        data=paths.pattern("data"),
        labels=paths.pattern("labels"),
        model=paths.pattern("model"),
    output:
        record=paths.pattern("calibration"),
        plot=paths.pattern("calibration_plot"),
        pilots=paths.pattern("pilot_members"),
    log:
        paths.log("calibration"),
    benchmark:
        paths.benchmark("calibration")
    conda:
        "../envs/gex.yaml"
    threads: 1
    resources:
        gpu=GPU,
    params:
        model=config["model"],
        recipe=CHAIN_RECIPE,
        chains=config["ensemble"]["chains"],
        pretrain_recipe=config["pretrain"],
        eval_batch_size=config["eval_batch_size"],
        code=code("calibrate.py"),
    script:
        "../workflow_scripts/calibrate.py"


rule ensemble_chains:
    input:
        data=paths.pattern("data"),
        labels=paths.pattern("labels"),
        model=paths.pattern("model"),
        calibration=calibration_input("calibration"),
        pilots=calibration_input("pilot_members"),
    output:
        losses=paths.pattern("chain_losses"),
        members=paths.pattern("chain_members"),
    log:
        paths.log("chain_losses"),
    benchmark:
        paths.benchmark("chain_losses")
    conda:
        "../envs/gex.yaml"
    threads: 1
    resources:
        gpu=GPU,
    params:
        chains=lambda wc: list(paths.chain_range(wc.first, wc.last)),
        model=config["model"],
        recipe=CHAIN_RECIPE,
        pretrain_recipe=config["pretrain"],
        eval_batch_size=config["eval_batch_size"],
        code=code("ensemble_chains.py"),
    script:
        "../workflow_scripts/ensemble_chains.py"
