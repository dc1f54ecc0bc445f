"""The research-grid presets: their settings, their DAG, and a real run on tiny files."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from gex_core.workflow.config import validate_config
from tests.formats import write_cifar10_binary, write_mnist
from tests.workflow_util import ROOT, planned_jobs, snakemake

PRESETS = (
    "mnist",
    "cifar10",
    "cifar100",
    "cifar10n",
    "cifar100n",
    "mnist_prune",
    "cifar10_prune",
)
SCHEMA = ROOT / "schemas/config.schema.yaml"
# Shrinks a preset to seconds of work while keeping every stage of its DAG.
TINY = {
    "pretrain": {"epochs": 2, "batch_size": 32, "num_checkpoints": 1, "bn_batches": 2},
    "ensemble": {"ft_steps": 2, "batch_size": 16},
    "influence": {
        "la_kfac": {"members": 2, "num_batches": 1, "batch_size": 16},
        "arnoldi": {"iterations": 3, "top_k": 2, "num_batches": 1, "batch_size": 16},
        "el2n": {"repeats": 1, "epochs": 1},
        "randproj": {"dim": 2},
        "tracinrp": {"dim": 2},
    },
    "eval_batch_size": 64,
}


def load_preset(name):
    with open(ROOT / "configs" / f"{name}.yaml") as f:
        config = yaml.safe_load(f)
    validate_config(config, SCHEMA)
    return config


@pytest.mark.parametrize("name", PRESETS)
def test_presets_are_valid_configs(name):
    """Every preset passes the schema and the cross-field checks."""
    config = load_preset(name)
    assert config["dataset"] in ("mnist", "cifar10", "cifar100")


def test_noise_and_pruning_grid_of_each_preset():
    assert load_preset("mnist")["noise"]["ratio"] == 0.1
    # 10k, 20k, 30k, 40k of MNIST's 60k; 5k .. 25k of CIFAR-10's 50k
    from gex_core.evaluation.prune import num_pruned

    fractions = load_preset("mnist_prune")["prune"]["fractions"]
    assert [num_pruned(f, 60000) for f in fractions] == [10000, 20000, 30000, 40000]
    fractions = load_preset("cifar10_prune")["prune"]["fractions"]
    assert [num_pruned(f, 50000) for f in fractions] == [
        5000,
        10000,
        15000,
        20000,
        25000,
    ]
    assert load_preset("cifar100")["noise"]["ratio"] == 0.1
    assert load_preset("cifar10n")["noise"]["label_set"] == "worse_label"
    assert load_preset("cifar100n")["noise"]["label_set"] == "noisy_label"


def write_overrides(workdir, **extra):
    path = workdir / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, **extra}))
    return str(path)


def run_preset(workdir, preset, data_dir, *args, **overrides):
    """Snakemake on configs/<preset>.yaml, shrunk by TINY (and overrides), reading the
    data set's files from data_dir; args go before the config options."""
    return snakemake(
        ROOT,
        workdir,
        *args,
        "--configfile",
        str(ROOT / "configs" / f"{preset}.yaml"),
        write_overrides(workdir, **overrides),
        "--config",
        f"data_dir={data_dir}",
    )


def test_cifar10_preset_plans_the_full_grid_on_tiny_binary_files(tmp_path):
    write_cifar10_binary(tmp_path / "cifar10", n_train=40, n_test=10)
    result = run_preset(tmp_path, "cifar10", tmp_path / "cifar10", "-n")
    assert result.returncode == 0, result.stderr
    seeds, methods, with_kernel = 4, 9, 5  # gex, tracinrp, la_kfac, randproj, arnoldi
    assert planned_jobs(result) == {
        "all": 1,
        "dataset": 1,
        "labels": seeds,
        "pretrain": seeds,
        "ensemble_chains": seeds * 8,
        "influence": seeds * methods,
        # with a noise mask, detect also writes the label-issue table and gallery
        "detect": seeds * methods,
        "relabel": seeds * methods,
        "relabel_baseline": seeds * 2,
        "summarize_label_issues": methods,
        "examples": seeds * with_kernel,
        "summarize_detection": 1,
        "summarize_relabel": 1,
        "rank_agreement": 1,
        "cost_table": 1,
    }
    assert "resnet18/sgd-e2-b32-lr0.4-wd0.0005-wu0.1-m0.9-T1-augcropflip-bn2" in (
        result.stdout
    )


def test_mnist_pruning_preset_plans_its_grid_without_detection(tmp_path):
    write_mnist(tmp_path / "mnist", n_train=64, n_test=16)
    result = run_preset(tmp_path, "mnist_prune", tmp_path / "mnist", "-n")
    assert result.returncode == 0, result.stderr
    seeds, methods, fractions = 4, 8, 4  # seven methods and random
    assert planned_jobs(result) == {
        "all": 1,
        "dataset": 1,
        "labels": seeds,
        "pretrain": seeds,
        "ensemble_chains": seeds * 8,
        "influence": seeds * methods,
        "prune": seeds * methods * fractions,
        "label_issues": seeds * methods,
        "summarize_label_issues": methods,
        "examples": seeds * 5,
        "summarize_prune": 1,
        "rank_agreement": 1,
        "cost_table": 1,
    }


@pytest.mark.slow
def test_mnist_preset_runs_on_tiny_idx_files(tmp_path):
    """A real run of the mnist preset's DAG (VGG-8 with BN, crop augmentation), one
    seed and two methods to keep it short (a CPU compiles each VGG program for
    seconds; the relabel experiment runs in the smoke test)."""
    write_mnist(tmp_path / "mnist", n_train=64, n_test=16)
    result = run_preset(
        tmp_path,
        "mnist",
        tmp_path / "mnist",
        "--cores",
        "2",
        seeds=[0],
        methods=["gex", "forgetting"],
        relabel={"methods": []},
        queries=8,
        figures={"gallery": 8, "examples": 2, "per_side": 2},
        ensemble={"chains": 2, "stages": 1, "ft_steps": 2, "batch_size": 16},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = "results/mnist/noise-sym0.1/vgg/sgd-e2-b32-lr0.4-wd0.0005-wu0.1-m0.9-T1-augcrop-bn2"
    summary = pd.read_csv(tmp_path / run / "summary/detection.tsv", sep="\t")
    assert sorted(summary.method) == ["forgetting", "gex"]
    labels = json.loads(
        (tmp_path / "results/mnist/noise-sym0.1/labels/seed0.json").read_text()
    )
    # 64 in the files, 7 of them (10%, rounded up) the validation split
    assert labels["num_train"] == 57 and labels["kind"] == "symmetric"
    history = pd.read_csv(tmp_path / run / "seed0/pretrain/history.tsv", sep="\t")
    # BN models evaluate after re-estimating statistics: here at the (final) epoch 2
    assert np.isnan(history.test_acc[0]) and history.test_acc[1] >= 0
    (gex,) = (tmp_path / run / "seed0/influence/gex").glob("*/scores.npz")
    with np.load(gex) as scores:
        assert scores["self_influence"].shape == (57,)
        assert np.isfinite(scores["self_influence"]).all()


def test_the_faithful_gex_setting_is_the_research_release_on_top_of_the_default():
    """configs/gex_faithful.yaml over config.yaml: 32 members of 800 steps at ft_lr
    0.05 and the clamped reference with tau 0.05, everything else the default."""
    from benchmarks.gex_ablation import merged
    from gex_core.workflow import paths

    default = yaml.safe_load((ROOT / "config.yaml").read_text())
    change = yaml.safe_load((ROOT / "configs" / "gex_faithful.yaml").read_text())
    config = merged(default, change)
    validate_config(config, SCHEMA)
    ensemble = config["ensemble"]
    assert (ensemble["chains"], ensemble["stages"]) == (8, 4)
    assert (ensemble["ft_lr"], ensemble["ft_steps"]) == (0.05, 800)
    assert config["influence"]["gex"] == {"reference": "clamped", "tau": 0.05}
    assert config["pretrain"] == load_default()["pretrain"]
    scores = paths.result(config, "scores", seed=0, method="gex")
    assert "/ensemble/" not in scores
    assert "gex/ft-lr0.05-s800-b64-S4-K8-ref-clamped-tau0.05/" in scores


def load_default():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    validate_config(config, SCHEMA)
    return config
