# Helpers shared by the rules: config checks, path segments, targets, fingerprints.
from pathlib import Path

from gex_core.workflow import paths
from gex_core.workflow.config import chain_recipe
from gex_core.workflow.artifacts import stored_train_size
from gex_core.workflow.fingerprint import source_fingerprint
from gex_core.influence.registry import get_method
from gex_core.workflow.jobenv import local_gpu_count
from gex_core.workflow.shards import num_shards

WORKFLOW_DIR = Path(workflow.basedir)
DATASET = paths.dataset_segment(config)
NOISE = paths.noise_segment(config["noise"])
TRAIN = paths.train_segment(config["pretrain"], config["model"])
ENSEMBLE = paths.ensemble_segment(config)
CHAIN_RECIPE = chain_recipe(config["ensemble"])
METHOD_HPARAMS = {
    name: paths.method_segment(name, config) for name in paths.scored_methods(config)
}
# Per-method cost inputs: each scoring job's timing, and the chains gex is built on.
TIMING = {
    method: [
        f"{paths.influence_dir(config, method, seed)}/timing.json"
        for seed in config["seeds"]
    ]
    for method in config["methods"]
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
        return [config["data_file"]]
    from gex_core.data.readers import required_files

    return [str(p) for p in required_files(config["dataset"], config["data_dir"])]


def human_label_files(wildcards):
    if config["noise"]["kind"] != "human":
        return []
    return [str(Path(config["data_dir"]) / config["noise"]["label_file"])]


if not Path(f"results/{DATASET}/data.npz").exists():
    data_files(None)
for _path in human_label_files(None):
    if not Path(_path).exists():
        raise FileNotFoundError(
            f"noise.label_file: {_path} does not exist. CIFAR-10N/100N labels come from "
            "https://github.com/UCSC-REAL/cifar-10-100n (see README, Data sets)"
        )


wildcard_constraints:
    dataset=r"[a-z0-9_]+|npz-[A-Za-z0-9_.-]+",
    noise=r"(sym|asym)[0-9.e-]+(-[0-9to_]+)?|human-[a-z0-9_]+",
    model=r"[a-z0-9_]+",
    train=r"[^/]+",
    seed=r"\d+",
    ensemble=r"[^/]+",
    first=r"\d+",
    last=r"\d+",
    method=r"[a-z0-9_]+",
    hparams=r"[^/]+",
    mode=r"hard|soft",
    order=r"lowest|highest",
    fraction=r"0\.[0-9]+",
    setting=r"oracle|predicted",


_FINGERPRINTS = {}


def code(script, *extra_modules):
    """Fingerprint of the gex_core sources a job script runs (params rerun trigger)."""
    key = (script, extra_modules)
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = source_fingerprint(
            WORKFLOW_DIR / "workflow_scripts" / script, WORKFLOW_DIR, extra_modules
        )
    return _FINGERPRINTS[key]


def method_code(wildcards):
    return code("influence.py", get_method(wildcards.method).module)


def expect(wildcards, **segments):
    """Refuse a target whose path names other knobs than the config holds.

    Paths are built from the config; asking for a path with other values (by hand on
    the command line) would silently compute it with the config's values instead.
    """
    configured = {
        "dataset": DATASET,
        "noise": NOISE,
        "model": config["model"],
        "train": TRAIN,
        **segments,
    }
    for name, value in configured.items():
        if name in wildcards.keys() and wildcards[name] != value:
            raise ValueError(
                f"target path has {name}={wildcards[name]!r} but the config gives "
                f"{value!r}; change config.yaml (or use --config) instead of the path"
            )
    return True


def labels_file(wildcards):
    return f"results/{wildcards.dataset}/noise-{wildcards.noise}/labels/seed{wildcards.seed}.npz"


def calibration_input(wildcards):
    """The chains' calibration record when ensemble.ft_lr is auto (else nothing)."""
    if config["ensemble"]["ft_lr"] != "auto":
        return []
    return paths.CALIBRATION.format(**wildcards)


def pretrained(name):
    """Input function: a file of the run's pretraining stage."""

    def pretrain_file(wildcards):
        return f"{paths.PRETRAIN.format(**wildcards)}/{name}"

    return pretrain_file


def chain_files(wildcards):
    if "ensemble" not in get_method(wildcards.method).needs:
        return []
    return paths.chain_files(config, int(wildcards.seed))


def detection_files(wildcards):
    if not paths.has_noise(config):
        return []
    return [
        f"{paths.influence_dir(config, method, seed)}/detection.json"
        for method in config["methods"]
        for seed in config["seeds"]
    ]


def scores_file(wildcards):
    return f"{paths.INFLUENCE.format(**wildcards)}/scores.npz"


# Sharded scoring (shard_size): which methods, and how many shards.
SHARDED = paths.sharded_methods(config)
UNSHARDED = [m for m in METHOD_HPARAMS if m not in SHARDED]


def any_of(names):
    """A wildcard pattern matching exactly these names (none: a pattern that never
    matches), so each method's scores.npz has exactly one producing rule."""
    return "|".join(names) if names else "(?!x)x"


def training_set_size():
    """N of the stored split, or of the data set's files before the split is stored
    (read once, when the workflow is parsed: shard jobs are planned up front, so dry
    runs and --until see them). A split stored from other files is caught by the
    shard jobs and the merge, which check their rows against the data they read."""
    stored = Path(f"results/{DATASET}/data.npz")
    if stored.exists():
        return stored_train_size(str(stored))
    from gex_core.data.load import load_dataset

    split = load_dataset(config["dataset"], config["data_dir"], config["data_file"])
    return len(split.y_train)


NUM_SHARDS = num_shards(training_set_size(), config["shard_size"]) if SHARDED else 0


def shard_outputs(ext):
    """Input function: the shard files of one method."""

    def files(wildcards):
        folder = paths.INFLUENCE.format(**wildcards)
        return paths.shard_files(folder, config["shard_size"], NUM_SHARDS, ext)

    return files
