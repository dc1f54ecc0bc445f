import os
from pathlib import Path

import pytest
import yaml

from gex_core.influence.registry import METHODS, get_method
from gex_core.workflow import paths

CONFIG = {
    "dataset": "digits",
    "model": "cnn",
    "noise": {"kind": "symmetric", "ratio": 0.1},
    "pretrain": {
        "epochs": 60,
        "batch_size": 64,
        "lr": 0.05,
        "weight_decay": 5.0e-4,
        "warmup_ratio": 0.1,
        "momentum": 0.9,
        "num_checkpoints": 5,
        "augment": "none",
        "bn_batches": 50,
    },
    "ensemble": {
        "chains": 4,
        "stages": 2,
        "ft_lr": 0.1,
        "ft_steps": 100,
        "batch_size": 64,
        "augment": "none",
        "chains_per_job": None,
        "batched": False,
    },
    "influence": {
        "gex": {"reference": "pretrained", "tau": 0.05},
        "randproj": {"dim": 20, "strategy": "vjp"},
    },
}


def test_segments_name_every_knob():
    assert paths.noise_segment(CONFIG["noise"]) == "sym0.1"
    assert paths.train_segment(CONFIG["pretrain"], "cnn") == (
        "sgd-e60-b64-lr0.05-wd0.0005-wu0.1-m0.9-T5-augnone"
    )
    # batch-norm models also name their statistics re-estimate
    assert paths.train_segment(
        {**CONFIG["pretrain"], "augment": "crop_flip"}, "resnet18"
    ).endswith("-augcropflip-bn50")
    assert paths.ensemble_segment(CONFIG) == "ft-lr0.1-s100-b64-S2"
    # fine-tuning augmentation is named only where it differs from the pretraining's
    cropped = {**CONFIG, "ensemble": {**CONFIG["ensemble"], "augment": "crop"}}
    assert paths.ensemble_segment(cropped) == "ft-lr0.1-s100-b64-S2-augcrop"
    assert (
        paths.method_segment("gex", CONFIG) == "ft-lr0.1-s100-b64-S2-K4-ref-pretrained"
    )
    # tau takes effect, and names the path, only with the paper's clamped reference
    clamped = {**CONFIG, "influence": {**CONFIG["influence"]}}
    clamped["influence"]["gex"] = {"reference": "clamped", "tau": 0.05}
    assert (
        paths.method_segment("gex", clamped)
        == "ft-lr0.1-s100-b64-S2-K4-ref-clamped-tau0.05"
    )
    assert get_method("gex").applicable(
        {"reference": "ensemble_mean", "tau": 0.05}
    ) == {"reference": "ensemble_mean"}
    # the projection strategy changes how, not what: it is not in the path
    assert paths.method_segment("randproj", CONFIG) == "d20"


def test_full_paths_of_a_run():
    assert paths.result(CONFIG, "model", seed=2) == (
        "results/digits/noise-sym0.1/cnn/sgd-e60-b64-lr0.05-wd0.0005-wu0.1-m0.9-T5"
        "-augnone/seed2/pretrain/model.msgpack"
    )
    assert (
        paths.result(CONFIG, "labels", seed=2)
        == "results/digits/noise-sym0.1/labels/seed2.npz"
    )
    assert paths.result(CONFIG, "scores", seed=1, method="randproj") == (
        "results/digits/noise-sym0.1/cnn/sgd-e60-b64-lr0.05-wd0.0005-wu0.1-m0.9-T5"
        "-augnone/seed1/influence/randproj/d20/scores.npz"
    )


def test_one_table_builds_every_path():
    """Rules, logs, benchmarks and scripts take their paths from paths.FILES: a
    folder renamed there moves every path in it, and no rule spells a path."""
    import re

    from tests.workflow_util import ROOT

    rules = "".join(p.read_text() for p in (ROOT / "rules").glob("*.smk"))
    assert "results/" not in rules and "logs/" not in rules
    assert "benchmarks/out" not in rules
    produced = set(re.findall(r'paths\.pattern\("(\w+)"\)', rules))
    assert produced == set(paths.FILES)  # every file has a rule, every rule a file
    renamed = dict(paths.FOLDERS, pretrain="<run>/pretraining")
    original = paths.FOLDERS
    try:
        paths.FOLDERS = renamed
        assert paths.result(CONFIG, "model", seed=0).endswith(
            "/seed0/pretraining/model.msgpack"
        )
        assert paths.log("model").endswith("/seed{seed}/pretraining/model.msgpack.log")
        assert paths.benchmark("history").endswith("/pretraining/history.tsv.tsv")
    finally:
        paths.FOLDERS = original


def test_noise_and_dataset_segments_of_every_kind(tmp_path):
    assert paths.noise_segment({"kind": "symmetric", "ratio": 0.3}) == "sym0.3"
    asym = {"kind": "asymmetric", "ratio": 0.2, "pairs": [[9, 1], [3, 5]]}
    assert paths.noise_segment(asym) == "asym0.2-9to1_3to5"
    human = {"kind": "human", "ratio": 0.1, "label_set": "worse_label"}
    assert paths.noise_segment(human) == "human-worse_label"
    data_file = tmp_path / "my-set.v2.npz"
    data_file.write_bytes(b"abc")  # sha256 ba7816bf8f01...
    user = {**CONFIG, "dataset": "npz", "data_file": str(data_file)}
    assert paths.dataset_segment(user) == "npz-my-set.v2-ba7816bf8f"
    assert paths.config_wildcards(user, 0)["dataset"] == "npz-my-set.v2-ba7816bf8f"


def test_same_named_data_files_never_share_results(tmp_path):
    """Two files called x.npz in different folders get their own results folder; a
    file replaced by another with an older modification time gets a new one."""
    from gex_core.workflow.fingerprint import content_digest

    cache = tmp_path / "digests.json"
    a, b = tmp_path / "a" / "x.npz", tmp_path / "b" / "x.npz"
    for path, content in ((a, b"first"), (b, b"second")):
        path.parent.mkdir()
        path.write_bytes(content)
    segments = {
        paths.dataset_segment({**CONFIG, "dataset": "npz", "data_file": str(p)})
        for p in (a, b)
    }
    assert len(segments) == 2 and all(s.startswith("npz-x-") for s in segments)
    before = content_digest(a, cache)
    stat = a.stat()
    a.write_bytes(b"FIRST")  # the same size, and dated back to the old mtime
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns - 10**9))
    assert content_digest(a, cache) != before
    assert content_digest(a, cache) == content_digest(a, None)


def test_values_are_formatted_canonically():
    assert paths.fmt(0.0005) == "0.0005"
    assert paths.fmt(1e-5) == "1e-05"
    assert paths.fmt(0.0) == "0.0"
    assert paths.fmt(60) == "60"
    assert paths.fmt(True) == "true"
    assert paths.fmt(None) == "auto"


def test_a_changed_knob_changes_only_its_own_and_downstream_segments():
    changed = {**CONFIG, "ensemble": {**CONFIG["ensemble"], "ft_steps": 300}}
    assert paths.train_segment(changed["pretrain"], "cnn") == paths.train_segment(
        CONFIG["pretrain"], "cnn"
    )
    assert paths.method_segment("gex", changed) != paths.method_segment("gex", CONFIG)
    assert paths.method_segment("randproj", changed) == "d20"


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match="unknown influence method 'tracin_typo'"):
        get_method("tracin_typo")


def test_schema_lists_exactly_the_registered_methods():
    with open("schemas/config.schema.yaml") as f:
        schema = yaml.safe_load(f)
    enum = schema["properties"]["methods"]["items"]["enum"]
    assert sorted(enum) == sorted(METHODS)
    knobs = schema["properties"]["influence"]["properties"]
    assert sorted(knobs) == sorted(METHODS)
    for name, spec in METHODS.items():
        expected = set(spec.hparams) | set(spec.unpathed)
        assert set(knobs[name]["properties"]) == expected, name


@pytest.mark.parametrize(
    ("chains", "per_job", "groups"),
    [
        (4, None, [range(0, 4)]),
        (4, 1, [range(0, 1), range(1, 2), range(2, 3), range(3, 4)]),
        (5, 2, [range(0, 2), range(2, 4), range(4, 5)]),
        (3, 8, [range(0, 3)]),
    ],
)
def test_chains_are_grouped_into_jobs_in_order(chains, per_job, groups):
    assert paths.chain_groups(chains, per_job) == groups


def test_chain_files_name_their_chains_and_not_how_many_exist():
    config = {**CONFIG, "ensemble": {**CONFIG["ensemble"], "chains_per_job": 2}}
    files = paths.chain_files(config, 0)
    folder = paths.result(config, "calibration", seed=0).removesuffix(
        "/calibration.json"
    )
    assert files == [f"{folder}/chains0-1.npz", f"{folder}/chains2-3.npz"]
    # more chains keep the existing files: only new ones are added
    more = {**config, "ensemble": {**config["ensemble"], "chains": 6}}
    assert paths.chain_files(more, 0) == files + [f"{folder}/chains4-5.npz"]
    assert paths.chain_range("2", "3") == range(2, 4)
    with pytest.raises(ValueError, match="chains3-2: the first chain must not come"):
        paths.chain_range(3, 2)


def test_schema_defaults_are_the_registry_defaults():
    """The API takes each method's defaults from the registry, the workflow from the
    schema: they must be the same values."""
    from gex_core.workflow.config import validate_config

    config = {"dataset": "digits"}
    validate_config(config, "schemas/config.schema.yaml")
    for name, spec in METHODS.items():
        assert config["influence"][name] == spec.defaults, name


def test_the_librarys_defaults_are_the_workflows():
    """Training, fine-tuning and calibration defaults are written twice, in the schema
    (workflow) and as keyword defaults of the library and API: they must agree."""
    import inspect

    from gex_core.api.ensemble import (
        DEFAULT_GRID,
        calibrate_with_pilots,
        fine_tuning_recipe,
    )
    from gex_core.influence.problem import Problem
    from gex_core.training.recipes import DEFAULT_TRAINING
    from gex_core.workflow.config import validate_config

    config = {"dataset": "digits"}
    validate_config(config, "schemas/config.schema.yaml")
    pre, ens = config["pretrain"], config["ensemble"]
    assert {key: pre[key] for key in DEFAULT_TRAINING} == DEFAULT_TRAINING
    recipe = fine_tuning_recipe()
    assert (recipe.stages, recipe.ft_steps, recipe.batch_size) == (
        ens["stages"],
        ens["ft_steps"],
        ens["batch_size"],
    )
    assert (recipe.weight_decay, recipe.momentum, recipe.bn_batches) == (
        pre["weight_decay"],
        pre["momentum"],
        pre["bn_batches"],
    )
    assert list(DEFAULT_GRID) == ens["calibration"]["grid"]
    calibrate = inspect.signature(calibrate_with_pilots).parameters
    assert calibrate["tolerance"].default == ens["calibration"]["tolerance"]
    assert calibrate["refine"].default == ens["calibration"]["refine"]
    problem = inspect.signature(Problem).parameters
    assert problem["eval_batch_size"].default == config["eval_batch_size"]


def test_same_named_image_folders_never_share_results(tmp_path):
    """folder-<name>-<digest of the images>: two folders called imgs differ; touching
    an image without changing it keeps the folder's results."""

    def make(root: Path, content: bytes) -> dict:
        for split, cls in (("train", "cat"), ("train", "dog"), ("test", "cat")):
            (root / split / cls).mkdir(parents=True)
            (root / split / cls / "0.png").write_bytes(content + cls.encode())
        return {**CONFIG, "dataset": "folder", "data_dir": str(root)}

    a = make(tmp_path / "a" / "imgs", b"one")
    b = make(tmp_path / "b" / "imgs", b"two")
    segment = paths.dataset_segment(a)
    assert segment.startswith("folder-imgs-") and segment != paths.dataset_segment(b)
    image = tmp_path / "a" / "imgs" / "train" / "cat" / "0.png"
    os.utime(image, ns=(10**18, 10**18))
    assert paths.dataset_segment(a) == segment
    image.write_bytes(b"changed")
    assert paths.dataset_segment(a) != segment
