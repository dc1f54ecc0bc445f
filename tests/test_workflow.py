"""Real Snakemake on the tiny config in tests/smoke: outputs, numbers and caching."""

import json
import re
import shutil
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from gex_core.workflow import paths
from tests.workflow_util import (
    ROOT,
    assert_same_result,
    copy_workflow,
    planned_jobs,
    pretraining_files,
    result_files,
    snakemake,
)

RUN = "results/digits/noise-sym0.2/mlp/sgd-e6-b128-lr0.1-wd0.0005-wu0.1-m0.9-T2-augnone/seed{seed}"
SUMMARY = RUN.removesuffix("/seed{seed}") + "/summary"
GEX = "influence/gex/ft-lr0.05-s10-b128-S1-K2-ref-pretrained"
RANDPROJ = "influence/randproj/d4"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    base = tmp_path_factory.mktemp("smoke")
    workflow = copy_workflow(base / "workflow")
    workdir = base / "run"
    workdir.mkdir()
    shutil.copy(ROOT / "tests" / "smoke" / "config.yaml", workdir / "config.yaml")
    # more cores than the machine has: as many jobs at once as the DAG allows, so
    # concurrent jobs that wrote one file would show (test_runs_are_bitwise_identical)
    result = snakemake(workflow, workdir, "--cores", "4")
    assert result.returncode == 0, result.stderr[-5000:]
    return workflow, workdir


# Jobs downstream of the scores of one method of the smoke config (gex or randproj),
# for 2 seeds: scoring, detection (which also writes the label-issue table and
# gallery), relabel, 1 pruning fraction, the label-issue table over seeds, examples.
ONE_METHOD_DOWNSTREAM = {
    "influence": 2,
    "detect": 2,
    "relabel": 2,
    "prune": 2,
    "summarize_label_issues": 1,
    "examples": 2,
}
# gex, randproj and random (pruning's baseline, scored but not detected or drawn)
EVERY_SCORE_DOWNSTREAM = {
    "influence": 6,
    "detect": 4,
    "relabel": 4,
    "relabel_baseline": 4,
    "prune": 6,
    "summarize_label_issues": 2,
    "examples": 4,
}
AGGREGATES = {
    "summarize_detection": 1,
    "cost_table": 1,
    "summarize_relabel": 1,
    "summarize_prune": 1,
    "rank_agreement": 1,
    "all": 1,
}


def config_with(workdir, path, **changes):
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config[path] = {**config[path], **changes}
    changed = workdir / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    return changed


def test_outputs_exist_and_hold_sane_numbers(smoke):
    _, workdir = smoke
    summary = pd.read_csv(workdir / SUMMARY / "detection.tsv", sep="\t")
    assert list(summary.method) == ["gex", "randproj"]
    assert (summary.seeds == 2).all()
    assert summary.auc_mean.between(0, 1).all() and summary.ap_mean.between(0, 1).all()
    # 20% symmetric noise on a barely trained MLP: loss-like scores find noisy labels
    assert (summary.auc_mean > 0.7).all(), summary
    assert summary.noise_rate.between(0.15, 0.2).all()

    for seed in (0, 1):
        run = workdir / RUN.format(seed=seed)
        labels = json.loads(
            (
                workdir / f"results/digits/noise-sym0.2/labels/seed{seed}.json"
            ).read_text()
        )
        assert labels["num_train"] == 1293  # 1437 less the 10% validation split
        history = pd.read_csv(run / "pretrain/history.tsv", sep="\t")
        assert list(history.epoch) == list(range(1, 7))
        assert history.train_loss.iloc[-1] < history.train_loss.iloc[0]
        assert (run / "pretrain/learning_curve.png").stat().st_size > 10_000
        with np.load(run / "pretrain/record.npz") as record:
            assert record["forgetting"].shape == (1293,)
            assert list(record["trajectory_epochs"]) == [4, 5]
        # both chains of the seed in one job (ensemble.chains_per_job: null)
        with np.load(run / "ensemble/ft-lr0.05-s10-b128-S1/chains0-1.npz") as chains:
            assert chains["train_losses"].shape == (2, 1293)
            assert chains["test_losses"].shape == (2, 360)
            assert list(chains["chains"]) == [0, 1]
        for method in (GEX, RANDPROJ):
            with np.load(run / method / "scores.npz") as scores:
                assert scores["self_influence"].shape == (1293,)
                assert np.isfinite(scores["self_influence"]).all()
            metrics = json.loads((run / method / "detection.json").read_text())
            with (
                np.load(run / method / "scores.npz") as scores,
                np.load(
                    workdir / f"results/digits/noise-sym0.2/labels/seed{seed}.npz"
                ) as noise,
            ):
                expected = roc_auc_score(noise["mask"], scores["self_influence"])
            assert metrics["auc"] == pytest.approx(expected, rel=1e-12)
            assert metrics["auc"] > 0.7
            for plot in ("histogram.png", "curves.png"):
                assert (run / method / plot).stat().st_size > 10_000

    cost = pd.read_csv(workdir / SUMMARY / "cost.tsv", sep="\t")
    assert list(cost.method) == ["gex", "randproj"]
    assert (cost.scoring_s > 0).all() and (cost.forward_passes > 0).all()
    # gex scoring is array work on saved losses; its chains are where its cost lies
    gex_cost = cost.set_index("method").loc["gex"]
    assert gex_cost.forward_passes > 1
    assert cost.set_index("method").upstream_s["gex"] > 0  # the ensemble chains
    assert cost.set_index("method").upstream_s["randproj"] == 0
    rules = pd.read_csv(workdir / SUMMARY / "rule_cost.tsv", sep="\t")
    assert set(rules.rule) == {
        "dataset",
        "labels",
        "pretrain",
        "ensemble_chains",
        "influence",
        "detect",
        "relabel",
        "relabel_baseline",
        "prune",
    }
    jobs = rules.set_index("rule").jobs
    assert (jobs.ensemble_chains, jobs.relabel, jobs.relabel_baseline) == (2, 4, 4)
    assert jobs.prune == 3 * 2  # gex, randproj, random x 2 seeds x 1 fraction


def test_relabel_prune_and_figures_of_the_smoke_run(smoke):
    _, workdir = smoke
    relabel = pd.read_csv(workdir / SUMMARY / "relabel.tsv", sep="\t")
    assert list(relabel.setting) == [
        "none",
        "all predicted",
        "gex (soft)",
        "randproj (soft)",
        "oracle (clean labels)",
    ]
    assert (relabel.seeds == 2).all() and relabel["mean"].between(0.5, 1).all()
    for seed in (0, 1):
        run = workdir / RUN.format(seed=seed)
        result = json.loads((run / GEX / "relabel-soft.json").read_text())
        assert 0 < result["num_flagged"] < 1293
        assert 0 <= result["precision"] <= 1 and 0 <= result["recall"] <= 1
        # fixed labels are flagged noisy samples, broken ones flagged clean samples
        assert result["fixed"] <= result["precision"] * result["num_flagged"] + 1e-9
        assert result["broken"] <= result["num_flagged"] - result["fixed"]
        pruned = json.loads((run / GEX / "prune-lowest-f0.25.json").read_text())
        assert pruned["num_pruned"] == 323  # floor(0.25 * 1293)
        baseline = json.loads((run / "relabel/oracle.json").read_text())
        assert 0.5 < baseline["test_acc"] <= 1
        for method in (GEX, RANDPROJ):
            with np.load(run / method / "scores.npz") as scores:
                assert scores["kernel"].shape == (1293, 20)
                np.testing.assert_array_equal(scores["query_indices"], np.arange(20))
            for figure in ("gallery.png", "examples.png"):
                assert (run / method / figure).stat().st_size > 10_000
    prune = pd.read_csv(workdir / SUMMARY / "prune.tsv", sep="\t")
    assert set(prune.method) == {"gex", "randproj", "random"}
    assert sorted(prune.fraction.unique()) == [0.0, 0.25]
    assert len(prune) == 3 * 2 * 2
    agreement = pd.read_csv(workdir / SUMMARY / "rank_agreement.tsv", sep="\t")
    matrix = agreement.set_index("method")
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    np.testing.assert_allclose(matrix.to_numpy(), matrix.to_numpy().T)


def test_report_holds_every_figure_with_its_caption(smoke):
    workflow, workdir = smoke
    result = snakemake(workflow, workdir, "--report", "report.html")
    assert result.returncode == 0, result.stderr[-3000:]
    html = (workdir / "report.html").read_text()
    for name in (
        "learning_curve.png",
        "histogram.png",
        "curves.png",
        "gallery.png",
        "examples.png",
        "detection.png",
        "relabel.png",
        "prune.png",
        "rank_agreement.png",
        "cost.tsv",
        "label_issues-gex-top.tsv",
        "label_issues-randproj-top.tsv",
    ):
        assert name in html, name
    for category in ("Label issues", "Train x test influence", "Pruning", "Relabel"):
        assert category in html
    # captions made it in
    assert "a good" in html and "method shows mostly red here" in html
    assert "review it before relabeling or removing it" in html


def test_a_finished_run_has_nothing_to_do(smoke):
    workflow, workdir = smoke
    result = snakemake(workflow, workdir, "-n")
    assert result.returncode == 0
    assert planned_jobs(result) == {}


def test_changing_a_gex_knob_never_reruns_pretraining(smoke):
    workflow, workdir = smoke
    changed = config_with(workdir, "ensemble", ft_steps=7)
    jobs = planned_jobs(
        snakemake(workflow, workdir, "-n", "--configfile", str(changed))
    )
    assert jobs == {
        "ensemble_chains": 2,
        **ONE_METHOD_DOWNSTREAM,
        **AGGREGATES,
    }


def test_how_chains_are_run_reruns_nothing_but_more_chains_do(smoke):
    workflow, workdir = smoke
    for changes in ({"batched": True}, {"chains_per_job": 2}):
        changed = config_with(workdir, "ensemble", **changes)
        result = snakemake(workflow, workdir, "-n", "--configfile", str(changed))
        assert result.returncode == 0, result.stderr[-3000:]
        assert planned_jobs(result) == {}, changes
    # chains_per_job 2 keeps the job chains0-1 and adds chains2-3 for 4 chains
    changed = config_with(workdir, "ensemble", chains=4, chains_per_job=2)
    result = snakemake(workflow, workdir, "-n", "--configfile", str(changed))
    assert planned_jobs(result) == {
        "ensemble_chains": 2,
        **ONE_METHOD_DOWNSTREAM,
        **AGGREGATES,
    }
    outputs = [
        line
        for line in result.stdout.splitlines()
        if line.strip().startswith("output:")
    ]
    assert any("chains2-3.npz" in line for line in outputs)
    assert not any("chains0-1.npz" in line for line in outputs)


def test_changing_the_noise_ratio_reruns_everything_downstream_of_labels(smoke):
    workflow, workdir = smoke
    changed = config_with(workdir, "noise", ratio=0.3)
    jobs = planned_jobs(
        snakemake(workflow, workdir, "-n", "--configfile", str(changed))
    )
    assert jobs == {
        "labels": 2,
        "pretrain": 2,
        "ensemble_chains": 2,
        **EVERY_SCORE_DOWNSTREAM,
        **AGGREGATES,
    }


def planned_after_edit(smoke, module: str, edit) -> dict[str, int]:
    """The dry-run plan after edit(text) of gex_core/<module> (then undone)."""
    workflow, workdir = smoke
    source = workflow / "gex_core" / module
    original = source.read_text()
    try:
        source.write_text(edit(original))
        return planned_jobs(snakemake(workflow, workdir, "-n"))
    finally:
        source.write_text(original)


def append(text: str):
    return lambda original: original + text


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("influence/ensemble.py", {"ensemble_chains": 2, **ONE_METHOD_DOWNSTREAM}),
        ("influence/projection.py", ONE_METHOD_DOWNSTREAM),
        ("influence/gex.py", ONE_METHOD_DOWNSTREAM),
        (
            "training/fit.py",
            {
                "pretrain": 2,
                "ensemble_chains": 2,
                **EVERY_SCORE_DOWNSTREAM,
            },
        ),
    ],
)
def test_editing_code_marks_exactly_its_stages_stale(smoke, module, expected):
    jobs = planned_after_edit(smoke, module, append("\n_EDITED = 1\n"))
    # aggregation always follows its inputs
    assert jobs == {**expected, **AGGREGATES}


@pytest.mark.parametrize(
    ("module", "edit"),
    [
        ("training/fit.py", append("\n# a comment\n")),
        # a docstring and the formatting of a call
        ("influence/gex.py", lambda t: t.replace('"""', '"""Edited: ', 1)),
        ("influence/gex.py", lambda t: t.replace("(\n", "(  \n\n", 3)),
        # the reader of a data set the config does not use
        ("data/readers/svhn.py", append("\n_EDITED = 1\n")),
    ],
)
def test_edits_that_change_no_code_it_runs_rerun_nothing(smoke, module, edit):
    assert planned_after_edit(smoke, module, edit) == {}


SMALL_HPARAMS = {
    "gex": {"tau": 0.0},
    "la_kfac": {
        "members": 2,
        "alpha": 1e-4,
        "sigma": 1e-4,
        "tau": 0.0,
        "num_batches": 2,
        "batch_size": 64,
    },
    "randproj": {"dim": 4, "strategy": "vjp"},
    "tracinrp": {"dim": 4, "lr_weights": True, "strategy": "vjp"},
    "tracin": {"lr_weights": False},
    "arnoldi": {
        "iterations": 6,
        "top_k": 3,
        "num_batches": 1,
        "batch_size": 64,
        "strategy": "vjp",
    },
    "el2n": {"repeats": 1, "epochs": 1},
    "forgetting": {},
    "member_loss": {},
    "cl": {"folds": 2},
    "knn": {"k": 0},
    "random": {},
}


def test_every_registered_method_runs_on_real_workflow_artifacts(smoke):
    """Each registry entry, fed by MethodInputs from the smoke run's files."""
    from gex_core.influence.registry import METHODS
    from gex_core.workflow.method_inputs import MethodInputs

    _, workdir = smoke
    run = workdir / RUN.format(seed=0)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    inputs = MethodInputs(
        data_path=str(workdir / "results/digits/data.npz"),
        labels_path=str(workdir / "results/digits/noise-sym0.2/labels/seed0.npz"),
        pretraining=pretraining_files(run / "pretrain"),
        model_name="mlp",
        seed=0,
        eval_batch_size=512,
        recipe=config["pretrain"],
        chain_paths=(str(run / "ensemble/ft-lr0.05-s10-b128-S1/chains0-1.npz"),),
    )
    assert set(SMALL_HPARAMS) | {"exact", "lissa"} == set(METHODS)
    for name, hp in SMALL_HPARAMS.items():
        scores = METHODS[name].load()(inputs, hp)
        assert scores.self_influence.shape == (1293,), name
        assert np.isfinite(scores.self_influence).all(), name
    # the MLP (19,210 parameters) is above exact's limit: refused with both numbers
    with pytest.raises(ValueError, match="19,210 parameters, above the limit"):
        METHODS["exact"].load()(inputs, {"damping": None, "max_params": 5000})


def test_sharded_scoring_reproduces_the_smoke_scores(smoke, tmp_path):
    """shard_size splits gex's and randproj's scoring into shard jobs (2 per method:
    rows 0:1024 and 1024:1293) and a merge; nothing upstream reruns, and with shards
    a multiple of eval_batch_size the merged scores are bitwise the one-job scores.
    Seed 0 only: seed 1 takes the same paths."""
    workflow, original = smoke
    workdir = tmp_path / "run"
    shutil.copytree(original, workdir, symlinks=True)
    targets = [
        f"{RUN.format(seed=0)}/{method}/scores.npz" for method in (GEX, RANDPROJ)
    ]
    args = (*targets, "--config", "shard_size=1024")  # --config takes what follows
    assert planned_jobs(snakemake(workflow, workdir, "-n", *args)) == {
        "influence_shard": 4,
        "influence_gather": 2,
    }
    result = snakemake(workflow, workdir, "--cores", "2", *args)
    assert result.returncode == 0, result.stderr[-5000:]
    for method in (GEX, RANDPROJ):
        folder = RUN.format(seed=0) + f"/{method}"
        shards = workdir / folder / "shards-1024"
        assert sorted(p.name for p in shards.glob("*.npz")) == [
            "shard0.npz",
            "shard1.npz",
        ]
        with (
            np.load(workdir / folder / "scores.npz") as got,
            np.load(original / folder / "scores.npz") as want,
        ):
            assert sorted(got.files) == sorted(want.files)
            for name in want.files:
                np.testing.assert_array_equal(got[name], want[name], name)
        timing = json.loads((workdir / folder / "timing.json").read_text())
        assert len(timing["shards"]) == 2


SUMMARY_RULES = (
    "summarize_detection",
    "summarize_relabel",
    "summarize_prune",
    "summarize_label_issues",
    "rank_agreement",
    "cost_table",
)


def test_runs_are_bitwise_identical_on_4_cores_and_on_1(smoke, tmp_path):
    """A clean run of the smoke config with up to 4 jobs at once and a clean run of its
    seed 0 with one job at a time agree bit for bit on every checkpoint, score,
    metric, table and figure of seed 0 (every per-seed rule; the summaries over seeds
    differ by design); only wall-clock measurements differ. Both use the session's
    compilation cache (tests/conftest.py): the second runs what the first compiled."""
    workflow, first = smoke
    second = tmp_path / "run"
    second.mkdir()
    config = yaml.safe_load((first / "config.yaml").read_text())
    (second / "config.yaml").write_text(yaml.safe_dump({**config, "seeds": [0]}))
    # the summaries over seeds are not compared: not made (7 jobs of 25)
    result = snakemake(workflow, second, "--cores", "1", "--omit-from", *SUMMARY_RULES)
    assert result.returncode == 0, result.stderr[-5000:]

    def seed0(workdir: Path) -> dict[str, Path]:
        return {
            name: path
            for name, path in result_files(workdir).items()
            if "/summary/" not in name and not re.search(r"/seed1[/.]", name)
        }

    want, got = seed0(first), seed0(second)
    assert sorted(got) == sorted(want) and len(want) >= 70
    for name, path in want.items():
        assert_same_result(name, path, got[name])
    assert not (second / "resume").exists()  # every job cleared its state


def test_every_artifact_has_its_provenance_beside_it(smoke):
    import hashlib
    import importlib.metadata
    import socket
    from datetime import datetime

    _, workdir = smoke
    files = result_files(workdir)
    artifacts = [name for name in files if not name.endswith(".provenance.json")]
    assert len(artifacts) * 2 == len(files)
    for name in artifacts:
        record = json.loads((workdir / f"{name}.provenance.json").read_text())
        data = (workdir / name).read_bytes()
        assert record["artifact"] == name.rsplit("/", 1)[-1]
        assert record["sha256"] == hashlib.sha256(data).hexdigest()
        assert record["bytes"] == len(data)
        start = datetime.fromisoformat(record["start"])
        end = datetime.fromisoformat(record["end"])
        assert (
            0
            <= record["wall_s"]
            == pytest.approx((end - start).total_seconds(), abs=2e-3)
        )
        assert record["host"] == socket.gethostname()
        assert record["gex_core_version"] == "0.1.0"
        # the smoke workflow is a copy outside any git checkout
        assert record["git"] == {"commit": "unknown", "dirty": None}
        for package in ("jax", "jaxlib", "flax", "optax", "numpy"):
            assert record["versions"][package] == importlib.metadata.version(package)

    chain = json.loads(
        (
            workdir
            / RUN.format(seed=1)
            / "ensemble/ft-lr0.05-s10-b128-S1/chains0-1.npz.provenance.json"
        ).read_text()
    )
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    assert chain["rule"] == "ensemble_chains"
    assert chain["seed"] == 1
    assert (chain["wildcards"]["first"], chain["wildcards"]["last"]) == ("0", "1")
    # the config's knobs, and the defaults validation added; the keys for how chains
    # are run (K, chains_per_job, batched) are not the job's params
    recipe = chain["params"]["recipe"]
    assert {k: recipe[k] for k in config["ensemble"] if k != "chains"} == {
        k: v for k, v in config["ensemble"].items() if k != "chains"
    }
    assert not {"chains", "chains_per_job", "batched"} & set(recipe)
    assert recipe["augment"] == "none"  # pretrain: the pretraining's, made concrete
    assert chain["params"]["recipe"]["calibration"]["tolerance"] == "auto"
    assert chain["params"]["pretrain_recipe"]["lr"] == config["pretrain"]["lr"]
    assert len(chain["params"]["code"]) == 16
    assert chain["device"] == {"kind": "cpu", "platform": "cpu", "count": 1}
    assert RUN.format(seed=1) + "/pretrain/model.msgpack" in chain["inputs"]
    summary = json.loads(
        (workdir / SUMMARY / "detection.tsv.provenance.json").read_text()
    )
    assert summary["seed"] is None and summary["rule"] == "summarize_detection"
    assert sorted(summary["inputs"]) == sorted(
        f"{RUN.format(seed=seed)}/{folder}/detection.json"
        for seed in (0, 1)
        for folder in (GEX, RANDPROJ)
    )
    assert summary["device"]["kind"] == "none (no JAX in this job)"


def test_automatic_ft_lr_is_calibrated_per_seed_and_read_by_the_chains(smoke, tmp_path):
    workflow, first = smoke
    workdir = shutil.copytree(first, tmp_path / "run", symlinks=True)
    changed = config_with(
        workdir,
        "ensemble",
        ft_lr="auto",
        calibration={"grid": [0.01, 0.05, 1.0e9], "tolerance": 0.05, "refine": 2},
    )
    ensemble = RUN.format(seed=0) + "/ensemble/ft-lrauto-s10-b128-S1"
    result = snakemake(
        workflow,
        workdir,
        "--configfile",
        str(changed),
        "--cores",
        "2",
        f"{ensemble}/chains0-0.npz",  # any chain range can be asked for
    )
    assert result.returncode == 0, result.stderr[-5000:]
    assert planned_jobs(result) == {"calibrate": 1, "ensemble_chains": 1}
    record = json.loads((workdir / ensemble / "calibration.json").read_text())
    grid = [row for row in record["grid"] if not row["refined"]]
    assert record["ft_lr"] in (0.01, 0.05) and record["valid"]
    # piloted from the top down to the choice; a smaller rate is never tried
    tried = [lr for lr in (0.01, 0.05, 1.0e9) if lr >= record["ft_lr"]]
    assert [row["lr"] for row in grid] == tried
    assert grid[-1]["finite"] is False  # diverged, never chosen
    # two bisecting pilots between the choice and the diverged rate
    refined = [row["lr"] for row in record["grid"] if row["refined"]]
    assert record["refine"] == 2 and len(refined) == 2
    assert all(record["ft_lr"] < lr < 1.0e9 for lr in refined)
    assert (workdir / ensemble / "calibration.png").stat().st_size > 10_000
    assert (workdir / ensemble / "calibration.json.provenance.json").exists()
    log = workdir / paths.log_file(f"{ensemble}/chains0-0.npz")
    assert f"ft_lr {record['ft_lr']} (calibrated: " in log.read_text()
    # the pilots at the chosen rate are kept; chain 0's one-stage job is its pilot
    from flax.serialization import msgpack_restore

    assert record["first_members"] == [0, 1]
    pilots = msgpack_restore((workdir / ensemble / "pilots.msgpack").read_bytes())
    chain = msgpack_restore((workdir / ensemble / "chains0-0.msgpack").read_bytes())
    assert sorted(pilots) == ["0", "1"] and sorted(chain) == ["0"]
    leaves = (
        jax.tree_util.tree_leaves(pilots["0"]),
        jax.tree_util.tree_leaves(chain["0"]),
    )
    assert len(leaves[0]) == len(leaves[1]) == 4  # the MLP's kernels and biases
    assert all(map(np.array_equal, *leaves))


def test_chains_run_one_per_job_equal_their_rows_of_the_grouped_job(smoke, tmp_path):
    """ensemble.chains_per_job changes the jobs, not the members: chains 0 and 1 run
    as two jobs give bitwise the rows of the smoke run's job chains0-1."""
    workflow, first = smoke
    workdir = shutil.copytree(first, tmp_path / "run", symlinks=True)
    changed = config_with(workdir, "ensemble", chains_per_job=1)
    folder = RUN.format(seed=0) + "/ensemble/ft-lr0.05-s10-b128-S1"
    result = snakemake(
        workflow,
        workdir,
        "--configfile",
        str(changed),
        "--cores",
        "2",
        *(f"{folder}/chains{c}-{c}.npz" for c in (0, 1)),  # relative to the workdir
    )
    ensemble = workdir / folder
    assert result.returncode == 0, result.stderr[-5000:]
    assert planned_jobs(result) == {"ensemble_chains": 2}
    with np.load(ensemble / "chains0-1.npz") as grouped:
        for c in (0, 1):
            with np.load(ensemble / f"chains{c}-{c}.npz") as alone:
                assert list(alone["chains"]) == [c]
                for key in ("train_losses", "test_losses"):
                    assert alone[key].tobytes() == grouped[key][c : c + 1].tobytes()


def test_comment_and_whitespace_edits_of_the_config_rerun_nothing(smoke, tmp_path):
    """The config's values decide what reruns, not its text: a comment, blank lines
    and another indentation plan no job."""
    workflow, original = smoke
    workdir = tmp_path / "run"
    shutil.copytree(original, workdir, symlinks=True)
    config = workdir / "config.yaml"
    text = config.read_text().replace("\n", "\n\n").replace(": ", ":   ")
    config.write_text("# edited by hand: nothing changes\n" + text + "\n# the end\n")
    assert yaml.safe_load(config.read_text()) == yaml.safe_load(
        (original / "config.yaml").read_text()
    )
    assert planned_jobs(snakemake(workflow, workdir, "-n")) == {}
