# Helpers shared by the rules: config checks, path segments, targets, fingerprints.
from pathlib import Path

from gex_core import paths
from gex_core.fingerprint import source_fingerprint
from gex_core.influence.registry import get_method


WORKFLOW_DIR = Path(workflow.basedir)
NOISE = paths.noise_segment(config["noise"])
TRAIN = paths.train_segment(config["pretrain"])
ENSEMBLE = paths.ensemble_segment(config["ensemble"])
METHOD_HPARAMS = {name: paths.method_segment(name, config) for name in config["methods"]}


def check_config(cfg):
    """Cross-field checks the JSON schema cannot express; fail before any job runs."""
    pre = cfg["pretrain"]
    if pre["epochs"] - pre["epochs"] // 2 < pre["num_checkpoints"]:
        raise ValueError(
            f"config pretrain.num_checkpoints={pre['num_checkpoints']} does not fit in "
            f"the second half of pretrain.epochs={pre['epochs']}"
        )


check_config(config)


wildcard_constraints:
    dataset=r"[a-z0-9_]+",
    noise=r"[a-z]+[0-9.e-]+",
    model=r"[a-z0-9_]+",
    train=r"[^/]+",
    seed=r"\d+",
    ensemble=r"[^/]+",
    chain=r"\d+",
    method=r"[a-z0-9_]+",
    hparams=r"[^/]+",


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
        "dataset": config["dataset"],
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


def run_path(pattern, seed, **extra):
    """Fill a paths.* pattern for the configured run and seed."""
    return pattern.format(**paths.run_wildcards(config, seed), **extra)


def labels_file(wildcards):
    return paths.LABELS.format(**wildcards) + ".npz"


def pretrained(wildcards, name):
    return paths.PRETRAIN.format(**wildcards) + "/" + name


def chain_files(wildcards):
    spec = get_method(wildcards.method)
    if "ensemble" not in spec.needs:
        return []
    folder = paths.ENSEMBLE.format(**wildcards, ensemble=ENSEMBLE)
    return [f"{folder}/chain{c}.npz" for c in range(config["ensemble"]["chains"])]


def influence_dirs(method):
    return [
        run_path(paths.INFLUENCE, seed, method=method, hparams=METHOD_HPARAMS[method])
        for seed in config["seeds"]
    ]


def bench_path(path):
    """Snakemake benchmark file of a job whose main output lies under results/."""
    return "benchmarks/out/" + path.removeprefix("results/") + ".tsv"


def all_targets():
    targets = [run_path(paths.PRETRAIN, s) + "/learning_curve.png" for s in config["seeds"]]
    for method in config["methods"]:
        for folder in influence_dirs(method):
            targets += [f"{folder}/{f}" for f in ("detection.json", "histogram.png", "curves.png")]
    summary = paths.SUMMARY.format(dataset=config["dataset"])
    targets += [
        f"{summary}/{f}"
        for f in ("detection.tsv", "detection.png", "cost.tsv", "rule_cost.tsv")
    ]
    return targets


def benchmark_files():
    """{rule: {method or "": [benchmark tsv per job]}} of every job of the configured run.

    Jobs shared by all methods (labels, pretraining) are listed under method "".
    """
    seeds = config["seeds"]
    labels = [
        "benchmarks/out/" + paths.LABELS.removeprefix("results/").format(
            dataset=config["dataset"], noise=NOISE, seed=s
        ) + ".tsv"
        for s in seeds
    ]
    pretrain = [bench_path(run_path(paths.PRETRAIN, s) + "/model.msgpack") for s in seeds]
    files = {"labels": {"": labels}, "pretrain": {"": pretrain}}
    files["ensemble_chain"] = {}
    files["influence"] = {}
    files["detect"] = {}
    for method in config["methods"]:
        folders = influence_dirs(method)
        files["influence"][method] = [bench_path(f + "/scores.npz") for f in folders]
        files["detect"][method] = [bench_path(f + "/detection.json") for f in folders]
        if "ensemble" in get_method(method).needs:
            files["ensemble_chain"][method] = [
                bench_path(run_path(paths.ENSEMBLE, s, ensemble=ENSEMBLE) + f"/chain{c}.npz")
                for s in seeds
                for c in range(config["ensemble"]["chains"])
            ]
    return files
