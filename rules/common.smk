# Helpers shared by the rules: config checks, path segments, targets, fingerprints.
import re
from pathlib import Path

from gex_core.workflow import paths
from gex_core.workflow.config import chain_recipe
from gex_core.workflow.artifacts import stored_train_size
from gex_core.workflow.fingerprint import source_fingerprint
from gex_core.influence.registry import get_method
from gex_core.workflow.jobenv import local_gpu_count
from gex_core.workflow.shards import num_shards
from gex_core.data.load import HUMAN_LABELS, reader_module

WORKFLOW_DIR = Path(workflow.basedir)
# What the config gives each wildcard: a target path naming other knobs has no rule
CONFIGURED = paths.config_wildcards(config)
CHAIN_RECIPE = chain_recipe(config["ensemble"])
METHOD_HPARAMS = {
    name: paths.method_segment(name, config) for name in paths.scored_methods(config)
}
# Per-method cost inputs: each scoring job's timing, and the chains gex is built on.
TIMING = {
    method: paths.per_method(config, "timing", [method]) for method in config["methods"]
}
CHAINS = {
    method: [f for seed in config["seeds"] for f in paths.chain_files(config, seed)]
    for method in config["methods"]
    if "ensemble" in get_method(method).needs
}
# JAX rules ask for a GPU where the machine running Snakemake has one, and the default
# profile then runs one GPU job at a time. Without a GPU they run side by side on the
# CPU (a cap would leave cores idle: 5.1 vs 7.0 min for the default run on 2 cores).
# Cluster profiles request GPUs per rule with set-resources.
GPU = min(1, local_gpu_count())


def data_files(wildcards):
    """The raw files the dataset job reads (so replacing them reruns it).

    Checked when the workflow is parsed: missing files fail with their names and
    where to get them before any job runs, unless the split was already extracted.
    """
    if config["dataset"] == "digits":
        return []
    if config["dataset"] == "npz":
        from gex_core.data.load import npz_file

        return [str(npz_file(config["data_file"]))]
    if config["dataset"] == "folder":
        from gex_core.data.load import folder_files

        return [str(p) for p in folder_files(config["data_dir"])]
    from gex_core.data.load import required_files

    return [str(p) for p in required_files(config["dataset"], config["data_dir"])]


def human_label_files(wildcards):
    if config["noise"]["kind"] != "human":
        return []
    return [str(Path(config["data_dir"]) / config["noise"]["label_file"])]


_STORED = Path(paths.result(config, "data")).exists()
if config["dataset"] == "folder" or not _STORED:
    data_files(None)
if config["dataset"] == "folder" and not _STORED:
    # Decode every image now: a truncated or odd-sized one is named before any job
    # runs or writes (the dataset job reads the folder again to store it).
    from gex_core.data.load import load_dataset

    load_dataset("folder", config["data_dir"], test_fraction=config["test_fraction"])
for _path in human_label_files(None):
    if not Path(_path).exists():
        raise FileNotFoundError(
            f"noise.label_file: {_path} does not exist. CIFAR-10N/100N labels come from "
            "https://github.com/UCSC-REAL/cifar-10-100n (see docs/data.md)"
        )


def exactly(*values):
    """A wildcard pattern matching exactly these values (none: one that never does)."""
    return "|".join(re.escape(str(v)) for v in values) if values else "(?!x)x"


wildcard_constraints:
    dataset=exactly(CONFIGURED["dataset"]),
    noise=exactly(CONFIGURED["noise"]),
    model=exactly(CONFIGURED["model"]),
    train=exactly(CONFIGURED["train"]),
    ensemble=exactly(CONFIGURED["ensemble"]),
    seed=r"\d+",
    first=r"\d+",
    last=r"\d+",
    method=exactly(*METHOD_HPARAMS),
    hparams=exactly(*METHOD_HPARAMS.values()),
    mode=r"hard|soft",
    order=r"lowest|highest",
    fraction=r"0\.[0-9]+",
    setting=exactly(*paths.relabel_baselines(config)),


_FINGERPRINTS = {}


def code(script, *extra_modules):
    """Fingerprint of the gex_core sources a job script runs (params rerun trigger)."""
    key = (script, extra_modules)
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = source_fingerprint(
            WORKFLOW_DIR / "workflow_scripts" / script, WORKFLOW_DIR, extra_modules
        )
    return _FINGERPRINTS[key]


def dataset_code():
    """The dataset job's fingerprint: its script and the configured data set's reader."""
    reader = reader_module(config["dataset"])
    return code("make_dataset.py", *([reader] if reader else []))


def labels_code():
    """The labels job's fingerprint: its script, and the CIFAR-N reader for human noise."""
    human = config["noise"]["kind"] == "human"
    return code("make_labels.py", *([HUMAN_LABELS] if human else []))


def method_code(wildcards):
    return code("influence.py", get_method(wildcards.method).module)


def method_hparams(wildcards):
    """Refuse a method's folder named by another method's knobs (each wildcard alone
    is pinned to the config by wildcard_constraints; their pairing is checked here)."""
    if wildcards.hparams != METHOD_HPARAMS[wildcards.method]:
        raise ValueError(
            f"{wildcards.method}/{wildcards.hparams}: the config names this method's "
            f"folder {METHOD_HPARAMS[wildcards.method]}; change config.yaml (or use "
            "--config) instead of the path"
        )
    return wildcards.hparams


def result(name, **values):
    """Input function: result file `name` of the job's run (its wildcards)."""

    def file(wildcards):
        return paths.path(name, **{**CONFIGURED, **wildcards, **values})

    return file


def calibration_input(name):
    """Input function: the calibration's file `name` (its record, its pilots) when
    ensemble.ft_lr is auto (else nothing)."""

    def file(wildcards):
        if config["ensemble"]["ft_lr"] != "auto":
            return []
        return result(name)(wildcards)

    return file


def chain_files(wildcards):
    if "ensemble" not in get_method(wildcards.method).needs:
        return []
    return paths.chain_files(config, int(wildcards.seed))


def detection_files(wildcards):
    if not paths.has_noise(config):
        return []
    return paths.per_method(config, "detection", config["methods"])


# One method's and seed's label-issue table and gallery, and what they are made from:
# written by the detect rule with a noise mask, by the label_issues rule without one.
LABEL_ISSUE_INPUTS = dict(
    data=paths.pattern("data"),
    labels=paths.pattern("labels"),
    scores=paths.pattern("scores"),
    predictions=paths.pattern("predictions"),
)
LABEL_ISSUE_OUTPUTS = dict(
    table=paths.pattern("label_issues"),
    figure=report(
        paths.pattern("gallery"),
        caption="../report/gallery.rst",
        category="Label issues",
        subcategory="{method}",
        labels={"method": "{method}", "seed": "{seed}", "figure": "gallery"},
    ),
)


# Sharded scoring (shard_size): which methods, and how many shards.
SHARDED = paths.sharded_methods(config)
UNSHARDED = [m for m in METHOD_HPARAMS if m not in SHARDED]


def training_set_size():
    """N of the stored split, or of the data set's files before the split is stored
    (read once, when the workflow is parsed: shard jobs are planned up front, so dry
    runs and --until see them). A split stored from other files is caught by the
    shard jobs and the merge, which check their rows against the data they read."""
    stored = Path(paths.result(config, "data"))
    if stored.exists():
        return stored_train_size(str(stored))
    from gex_core.data.datasets import with_validation
    from gex_core.data.load import load_dataset

    split = load_dataset(
        config["dataset"],
        config["data_dir"],
        config["data_file"],
        config["test_fraction"],
    )
    return len(with_validation(split, config["validation_fraction"]).y_train)


NUM_SHARDS = num_shards(training_set_size(), config["shard_size"]) if SHARDED else 0


def shard_outputs(name):
    """Input function: one method's shard files (name: shard_scores, shard_timing)."""

    def files(wildcards):
        return [
            result(name, size=config["shard_size"], shard=shard)(wildcards)
            for shard in range(NUM_SHARDS)
        ]

    return files
