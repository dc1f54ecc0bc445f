"""Hyperparameter-named result paths: the one place that turns config values into names.

A stage's folder names every knob the stage depends on, its own and its inputs', so a
changed knob makes new targets and leaves other stages' results cached:

    results/{dataset}/noise-{noise}/labels/seed{seed}.npz
    results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/pretrain/model.msgpack
    .../seed{seed}/ensemble/{ensemble}/chains{first}-{last}.npz
    .../seed{seed}/influence/{method}/{hparams}/scores.npz
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gex_core.data.catalog import BN_MODELS
from gex_core.influence.registry import get_method

NOISE_KINDS = {"symmetric": "sym", "asymmetric": "asym", "human": "human"}

RUN = "results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}"
LABELS = "results/{dataset}/noise-{noise}/labels/seed{seed}"
PRETRAIN = RUN + "/pretrain"
ENSEMBLE = RUN + "/ensemble/{ensemble}"
CALIBRATION = ENSEMBLE + "/calibration.json"
CHAIN_GROUP = ENSEMBLE + "/chains{first}-{last}"
INFLUENCE = RUN + "/influence/{method}/{hparams}"
SHARD = INFLUENCE + "/shards-{size}/shard{shard}"
SUMMARY = "results/{dataset}/noise-{noise}/{model}/{train}/summary"
RELABEL_BASELINE = RUN + "/relabel/{setting}.json"
RELABEL_BASELINES = ("oracle", "predicted")


def fmt(value: Any) -> str:
    """Canonical text of a knob: ints as ints, floats by repr (0.1, 0.0005, 1e-05);
    None ("derive it") as auto."""
    if value is None:
        return "auto"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def dataset_segment(config: Mapping[str, Any]) -> str:
    """The results folder of the data set: its name, or npz-<file stem> for npz."""
    if config["dataset"] == "npz":
        return f"npz-{Path(config['data_file']).stem}"
    return config["dataset"]


def noise_segment(noise: Mapping[str, Any]) -> str:
    """symmetric 0.1 -> "sym0.1"; asymmetric 0.2 with pairs [[2, 7], [3, 8]] ->
    "asym0.2-2to7_3to8"; human with label set worse_label -> "human-worse_label"."""
    kind = NOISE_KINDS[noise["kind"]]
    if noise["kind"] == "human":
        return f"{kind}-{noise['label_set']}"
    segment = f"{kind}{fmt(float(noise['ratio']))}"
    if noise["kind"] == "asymmetric":
        segment += "-" + "_".join(f"{a}to{b}" for a, b in noise["pairs"])
    return segment


def train_segment(pretrain: Mapping[str, Any], model: str) -> str:
    """Pretraining recipe -> "sgd-e60-b64-lr0.05-wd0.0005-wu0.1-m0.9-T5-augnone"; models
    with batch norm add their re-estimate batches ("-bn50")."""
    segment = (
        f"sgd-e{pretrain['epochs']}-b{pretrain['batch_size']}-lr{fmt(pretrain['lr'])}"
        f"-wd{fmt(pretrain['weight_decay'])}-wu{fmt(pretrain['warmup_ratio'])}"
        f"-m{fmt(pretrain['momentum'])}-T{pretrain['num_checkpoints']}"
        f"-aug{pretrain['augment'].replace('_', '')}"
    )
    if model in BN_MODELS:
        segment += f"-bn{pretrain['bn_batches']}"
    return segment


def ensemble_segment(config: Mapping[str, Any]) -> str:
    """Chain recipe (not the chain count K) -> "ft-lr0.1-s100-b64-S2", plus
    "-augcrop" when the fine-tuning augmentation differs from the pretraining's.

    K, chains_per_job and batched are left out: a chain's members do not depend on
    them, so adding chains reuses the existing ones.
    """
    ensemble = config["ensemble"]
    segment = (
        f"ft-lr{fmt(ensemble['ft_lr'])}-s{ensemble['ft_steps']}"
        f"-b{ensemble['batch_size']}-S{ensemble['stages']}"
    )
    if ensemble["augment"] != config["pretrain"]["augment"]:
        segment += f"-aug{ensemble['augment'].replace('_', '')}"
    return segment


def method_segment(name: str, config: Mapping[str, Any]) -> str:
    """A method's own knobs, prefixed by its upstream recipe where it has one.

    gex -> "ft-lr0.1-s100-b64-S2-K4-ref-pretrained" (with reference clamped:
    "...-K4-ref-clamped-tau0.05"); randproj -> "d20".
    """
    spec = get_method(name)
    hp = spec.applicable(config["influence"][name])
    parts = []
    if "ensemble" in spec.needs:
        parts += [
            ensemble_segment(config),
            f"K{config['ensemble']['chains']}",
        ]
    parts += [
        f"{label}{fmt(hp[key])}" for key, label in spec.hparams.items() if key in hp
    ]
    return "-".join(parts) if parts else "default"


def run_wildcards(config: Mapping[str, Any], seed: int) -> dict[str, str]:
    """Values of the {dataset}, {noise}, {model}, {train}, {seed} wildcards of a run."""
    return {
        "dataset": dataset_segment(config),
        "noise": noise_segment(config["noise"]),
        "model": config["model"],
        "train": train_segment(config["pretrain"], config["model"]),
        "seed": str(seed),
    }


def labels_file(config: Mapping[str, Any], seed: int) -> str:
    return LABELS.format(**run_wildcards(config, seed)) + ".npz"


def pretrain_dir(config: Mapping[str, Any], seed: int) -> str:
    return PRETRAIN.format(**run_wildcards(config, seed))


def ensemble_dir(config: Mapping[str, Any], seed: int) -> str:
    return ENSEMBLE.format(
        **run_wildcards(config, seed), ensemble=ensemble_segment(config)
    )


def calibration_files(config: Mapping[str, Any], seed: int) -> list[str]:
    """The calibration record the chains read when ensemble.ft_lr is auto (else none)."""
    if config["ensemble"]["ft_lr"] != "auto":
        return []
    return [f"{ensemble_dir(config, seed)}/calibration.json"]


def chain_groups(chains: int, per_job: int | None) -> list[range]:
    """The chains each ensemble job runs: consecutive runs of per_job (None: all)."""
    size = chains if per_job is None else per_job
    return [range(first, min(first + size, chains)) for first in range(0, chains, size)]


def chain_range(first: int | str, last: int | str) -> range:
    """The chains of a chains{first}-{last} file; a range running backwards is an error."""
    first, last = int(first), int(last)
    if first > last:
        raise ValueError(
            f"ensemble file chains{first}-{last}: the first chain must not come after "
            "the last"
        )
    return range(first, last + 1)


def chain_files(config: Mapping[str, Any], seed: int) -> list[str]:
    """The ensemble jobs' member-loss files of a seed, in chain order."""
    ensemble = config["ensemble"]
    wildcards = {**run_wildcards(config, seed), "ensemble": ensemble_segment(config)}
    return [
        CHAIN_GROUP.format(**wildcards, first=group[0], last=group[-1]) + ".npz"
        for group in chain_groups(ensemble["chains"], ensemble["chains_per_job"])
    ]


def influence_dir(config: Mapping[str, Any], method: str, seed: int) -> str:
    return INFLUENCE.format(
        **run_wildcards(config, seed),
        method=method,
        hparams=method_segment(method, config),
    )


def sharded_methods(config: Mapping[str, Any]) -> list[str]:
    """The scored methods computed in shards: the shardable ones when shard_size is
    set, none otherwise."""
    if config.get("shard_size") is None:
        return []
    return [m for m in scored_methods(config) if get_method(m).shardable]


def shard_files(influence: str, shard_size: int, count: int, ext: str) -> list[str]:
    """The shard outputs (ext "npz" scores or "json" timing) of one influence folder."""
    return [f"{influence}/shards-{shard_size}/shard{i}.{ext}" for i in range(count)]


def summary_dir(config: Mapping[str, Any]) -> str:
    """Tables and plots over seeds and methods of one (data, noise, model, recipe)."""
    wildcards = run_wildcards(config, 0)
    del wildcards["seed"]
    return SUMMARY.format(**wildcards)


def benchmark_file(output: str) -> str:
    """The Snakemake benchmark file of the job whose first output is `output`."""
    return f"benchmarks/out/{output.removeprefix('results/')}.tsv"


def prune_methods(config: Mapping[str, Any]) -> list[str]:
    """Methods of the pruning experiment: the configured ones plus random (empty when
    the experiment is off)."""
    chosen = list(config["prune"]["methods"])
    return chosen + ["random"] if chosen and "random" not in chosen else chosen


def scored_methods(config: Mapping[str, Any]) -> list[str]:
    """Every method whose scores some target needs."""
    return list(dict.fromkeys([*config["methods"], *prune_methods(config)]))


def relabel_file(config: Mapping[str, Any], method: str, seed: int) -> str:
    folder = influence_dir(config, method, seed)
    return f"{folder}/relabel-{config['relabel']['mode']}.json"


def relabel_baseline_file(config: Mapping[str, Any], setting: str, seed: int) -> str:
    return RELABEL_BASELINE.format(**run_wildcards(config, seed), setting=setting)


def prune_file(
    config: Mapping[str, Any], method: str, seed: int, fraction: float
) -> str:
    folder = influence_dir(config, method, seed)
    return f"{folder}/prune-{config['prune']['order']}-f{fmt(float(fraction))}.json"


def relabel_files(config: Mapping[str, Any]) -> list[str]:
    return [
        relabel_file(config, m, s)
        for m in config["relabel"]["methods"]
        for s in config["seeds"]
    ]


def relabel_baseline_files(config: Mapping[str, Any]) -> list[str]:
    """Both baselines per seed, when the relabel experiment is on."""
    if not config["relabel"]["methods"]:
        return []
    return [
        relabel_baseline_file(config, setting, seed)
        for setting in RELABEL_BASELINES
        for seed in config["seeds"]
    ]


def prune_files(config: Mapping[str, Any]) -> list[str]:
    return [
        prune_file(config, m, s, f)
        for m in prune_methods(config)
        for s in config["seeds"]
        for f in config["prune"]["fractions"]
    ]


def history_files(config: Mapping[str, Any]) -> list[str]:
    return [f"{pretrain_dir(config, s)}/history.tsv" for s in config["seeds"]]


def figure_files(config: Mapping[str, Any]) -> list[str]:
    """Per (method, seed): the gallery, and the train x test examples where the method
    has a kernel and queries are configured."""
    files = []
    for method in config["methods"]:
        for seed in config["seeds"]:
            folder = influence_dir(config, method, seed)
            files.append(f"{folder}/gallery.png")
            if config["queries"] > 0 and get_method(method).kernel:
                files.append(f"{folder}/examples.png")
    return files


def has_noise(config: Mapping[str, Any]) -> bool:
    """False when the labels are clean by construction (symmetric or asymmetric noise of
    ratio 0, e.g. the pruning presets): detection then has nothing to detect."""
    noise = config["noise"]
    return noise["kind"] == "human" or float(noise["ratio"]) > 0


DETECTION_FILES = ("detection.json", "histogram.png", "curves.png")
SUMMARY_FILES = (
    "cost.tsv",
    "rule_cost.tsv",
    "rank_agreement.tsv",
    "rank_agreement.png",
)


def summary_files(config: Mapping[str, Any]) -> list[str]:
    """The summary folder's tables and figures for the enabled experiments."""
    names = list(SUMMARY_FILES)
    if has_noise(config):
        names += ["detection.tsv", "detection.png"]
    if config["relabel"]["methods"]:
        names += ["relabel.tsv", "relabel.png"]
    if prune_methods(config):
        names += ["prune.tsv", "prune.png"]
    return [f"{summary_dir(config)}/{name}" for name in names]


def all_targets(config: Mapping[str, Any]) -> list[str]:
    """Every final artifact of the configured experiment (the `all` rule's input)."""
    seeds = config["seeds"]
    targets = [f"{pretrain_dir(config, s)}/learning_curve.png" for s in seeds]
    for method in config["methods"] if has_noise(config) else []:
        for seed in seeds:
            folder = influence_dir(config, method, seed)
            targets += [f"{folder}/{name}" for name in DETECTION_FILES]
    return targets + figure_files(config) + summary_files(config)


def benchmark_files(config: Mapping[str, Any]) -> dict[str, dict[str, list[str]]]:
    """{rule: {method, "" for jobs every method shares, or "baselines": [benchmark file
    per job]}}; rules without jobs in this config have an empty dict."""
    seeds = config["seeds"]
    files: dict[str, dict[str, list[str]]] = {
        "dataset": {
            "": [benchmark_file(f"results/{dataset_segment(config)}/data.npz")]
        },
        "labels": {"": [benchmark_file(labels_file(config, s)) for s in seeds]},
        "pretrain": {
            "": [
                benchmark_file(f"{pretrain_dir(config, s)}/model.msgpack")
                for s in seeds
            ]
        },
        "calibrate": {},
        "ensemble_chains": {},
        "influence": {},
        "influence_gather": {},
        "detect": {},
        "relabel": {},
        "relabel_baseline": {},
        "prune": {},
    }
    sharded = sharded_methods(config)
    for method in config["methods"]:
        folders = [influence_dir(config, method, s) for s in seeds]
        # a sharded method's scores.npz is written by the merge; its shard jobs are
        # listed in its timing.json (their number is known only once the data exist)
        scoring = "influence_gather" if method in sharded else "influence"
        files[scoring][method] = [benchmark_file(f"{f}/scores.npz") for f in folders]
        if has_noise(config):
            files["detect"][method] = [
                benchmark_file(f"{f}/detection.json") for f in folders
            ]
        if "ensemble" in get_method(method).needs:
            files["ensemble_chains"][method] = [
                benchmark_file(path) for s in seeds for path in chain_files(config, s)
            ]
            files["calibrate"][method] = [
                benchmark_file(path)
                for s in seeds
                for path in calibration_files(config, s)
            ]
    for method in config["relabel"]["methods"]:
        files["relabel"][method] = [
            benchmark_file(relabel_file(config, method, s)) for s in seeds
        ]
    if config["relabel"]["methods"]:
        files["relabel_baseline"]["baselines"] = [
            benchmark_file(path) for path in relabel_baseline_files(config)
        ]
    for method in prune_methods(config):
        files["prune"][method] = [
            benchmark_file(prune_file(config, method, s, f))
            for s in seeds
            for f in config["prune"]["fractions"]
        ]
    return files
