"""Hyperparameter-named result paths: the one place that turns config values into names.

A stage's folder names every knob the stage depends on, its own and its inputs', so a
changed knob makes new targets and leaves other stages' results cached:

    results/{dataset}/noise-{noise}/labels/seed{seed}.npz
    results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/pretrain/model.msgpack
    .../seed{seed}/ensemble/{ensemble}/chains{first}-{last}.npz
    .../seed{seed}/influence/{method}/{hparams}/scores.npz
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gex_core.data.catalog import BN_MODELS
from gex_core.influence.registry import get_method

NOISE_KINDS = {
    "none": "none",
    "symmetric": "sym",
    "asymmetric": "asym",
    "human": "human",
}

# The one table of result paths. A folder may start inside another (<run>); every
# result file is a folder and a file name. Rules take their output, log and benchmark
# paths from `pattern`, `log` and `benchmark`, scripts and aggregations from `result`.
FOLDERS = {
    "dataset": "results/{dataset}",
    "labels": "<dataset>/noise-{noise}/labels",
    "experiment": "<dataset>/noise-{noise}/{model}/{train}",
    "run": "<experiment>/seed{seed}",
    "pretrain": "<run>/pretrain",
    "ensemble": "<run>/ensemble/{ensemble}",
    "influence": "<run>/influence/{method}/{hparams}",
    "shards": "<influence>/shards-{size}",
    "relabel_baselines": "<run>/relabel",
    "summary": "<experiment>/summary",
}
FILES = {
    "data": ("dataset", "data.npz"),
    "labels": ("labels", "seed{seed}.npz"),
    "labels_summary": ("labels", "seed{seed}.json"),
    "model": ("pretrain", "model.msgpack"),
    "trajectory": ("pretrain", "trajectory.msgpack"),
    "record": ("pretrain", "record.npz"),
    "pretrained_losses": ("pretrain", "losses.npz"),
    "history": ("pretrain", "history.tsv"),
    "learning_curve": ("pretrain", "learning_curve.png"),
    "predictions": ("pretrain", "predictions.npz"),
    "calibration": ("ensemble", "calibration.json"),
    "calibration_plot": ("ensemble", "calibration.png"),
    "pilot_members": ("ensemble", "pilots.msgpack"),
    "chain_losses": ("ensemble", "chains{first}-{last}.npz"),
    "chain_members": ("ensemble", "chains{first}-{last}.msgpack"),
    "scores": ("influence", "scores.npz"),
    "timing": ("influence", "timing.json"),
    "detection": ("influence", "detection.json"),
    "histogram": ("influence", "histogram.png"),
    "curves": ("influence", "curves.png"),
    "label_issues": ("influence", "label_issues.tsv"),
    "gallery": ("influence", "gallery.png"),
    "examples": ("influence", "examples.png"),
    "relabel": ("influence", "relabel-{mode}.json"),
    "prune": ("influence", "prune-{order}-f{fraction}.json"),
    "shard_scores": ("shards", "shard{shard}.npz"),
    "shard_timing": ("shards", "shard{shard}.json"),
    "relabel_baseline": ("relabel_baselines", "{setting}.json"),
    "detection_table": ("summary", "detection.tsv"),
    "detection_plot": ("summary", "detection.png"),
    "cost_table": ("summary", "cost.tsv"),
    "rule_cost_table": ("summary", "rule_cost.tsv"),
    "relabel_table": ("summary", "relabel.tsv"),
    "relabel_plot": ("summary", "relabel.png"),
    "prune_table": ("summary", "prune.tsv"),
    "prune_plot": ("summary", "prune.png"),
    "rank_agreement_table": ("summary", "rank_agreement.tsv"),
    "rank_agreement_plot": ("summary", "rank_agreement.png"),
    "label_issues_table": ("summary", "label_issues-{method}.tsv"),
    "label_issues_top": ("summary", "label_issues-{method}-top.tsv"),
}
RELABEL_BASELINES = ("oracle", "predicted")


def folder(name: str) -> str:
    """A folder's wildcard pattern, the folder it starts in filled in."""
    template = FOLDERS[name]
    if template.startswith("<"):
        outer, rest = template[1:].split(">", 1)
        return folder(outer) + rest
    return template


def pattern(name: str) -> str:
    """A result file's wildcard pattern, e.g. pattern("model") ==
    "results/{dataset}/noise-{noise}/{model}/{train}/seed{seed}/pretrain/model.msgpack"."""
    where, file_name = FILES[name]
    return f"{folder(where)}/{file_name}"


def path(name: str, **wildcards: Any) -> str:
    """A result file's path for the given wildcard values."""
    return pattern(name).format(**wildcards)


def log(name: str) -> str:
    """The log file of the job that writes the result file `name`."""
    return log_file(pattern(name))


def log_file(output: str) -> str:
    """The log file of the job whose first output is `output`."""
    return f"logs/{output.removeprefix('results/')}.log"


def benchmark(name: str) -> str:
    """The Snakemake benchmark file of the job that writes the result file `name`."""
    return benchmark_file(pattern(name))


def benchmark_file(output: str) -> str:
    """The Snakemake benchmark file of the job whose first output is `output`."""
    return f"benchmarks/out/{output.removeprefix('results/')}.tsv"


def fmt(value: Any) -> str:
    """Canonical text of a knob: ints as ints, floats by repr (0.1, 0.0005, 1e-05);
    None ("derive it") as auto."""
    if value is None:
        return "auto"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def dataset_segment(config: Mapping[str, Any]) -> str:
    """The results folder of the data set: its name, npz-<file stem>-<the first 10
    hex digits of the file's sha256> for npz (two files of one name in different
    folders, or a file replaced by another, never share results), and folder-<folder
    name>-<10 hex digits of its images' digest> for an image folder (plus
    -split<test_fraction> when the folder has no test/ folder, so the held-out
    fraction names what was held out)."""
    if config["dataset"] == "npz":
        from gex_core.data.load import npz_file
        from gex_core.workflow.fingerprint import content_digest

        digest = content_digest(npz_file(config["data_file"]))
        return f"npz-{Path(config['data_file']).stem}-{digest[:10]}"
    if config["dataset"] == "folder":
        from gex_core.data.load import folder_images
        from gex_core.workflow.fingerprint import folder_digest

        root = Path(config["data_dir"])
        digest = folder_digest(root, folder_images(root))
        segment = f"folder-{root.resolve().name}-{digest[:10]}"
        if not (root / "test").is_dir():
            segment += f"-split{fmt(float(config['test_fraction']))}"
        return segment
    return config["dataset"]


def noise_segment(noise: Mapping[str, Any]) -> str:
    """none -> "none"; symmetric 0.1 -> "sym0.1"; asymmetric 0.2 with pairs [[2, 7], [3, 8]] ->
    "asym0.2-2to7_3to8"; human with label set worse_label -> "human-worse_label"."""
    kind = NOISE_KINDS[noise["kind"]]
    if noise["kind"] == "none":
        return kind
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


def config_wildcards(
    config: Mapping[str, Any], seed: int | None = None, method: str | None = None
) -> dict[str, str]:
    """The wildcard values the config gives: dataset, noise, model, train and
    ensemble, plus seed and a method's method and hparams when given."""
    wildcards = {
        "dataset": dataset_segment(config),
        "noise": noise_segment(config["noise"]),
        "model": config["model"],
        "train": train_segment(config["pretrain"], config["model"]),
        "ensemble": ensemble_segment(config),
    }
    if seed is not None:
        wildcards["seed"] = str(seed)
    if method is not None:
        wildcards.update(method=method, hparams=method_segment(method, config))
    return wildcards


def result(
    config: Mapping[str, Any],
    name: str,
    *,
    seed: int | None = None,
    method: str | None = None,
    **values: Any,
) -> str:
    """The path of result file `name` of the configured experiment (values: the
    file's own wildcards, e.g. first and last of a chain file)."""
    return path(name, **config_wildcards(config, seed, method), **values)


def calibration_files(config: Mapping[str, Any], seed: int) -> list[str]:
    """The calibration record the chains read when ensemble.ft_lr is auto (else none)."""
    if config["ensemble"]["ft_lr"] != "auto":
        return []
    return [result(config, "calibration", seed=seed)]


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
    return [
        result(config, "chain_losses", seed=seed, first=group[0], last=group[-1])
        for group in chain_groups(ensemble["chains"], ensemble["chains_per_job"])
    ]


def sharded_methods(config: Mapping[str, Any]) -> list[str]:
    """The scored methods computed in shards: the shardable ones when shard_size is
    set, none otherwise."""
    if config.get("shard_size") is None:
        return []
    return [m for m in scored_methods(config) if get_method(m).shardable]


def prune_methods(config: Mapping[str, Any]) -> list[str]:
    """Methods of the pruning experiment: the configured ones plus random (empty when
    the experiment is off)."""
    chosen = list(config["prune"]["methods"])
    return chosen + ["random"] if chosen and "random" not in chosen else chosen


def scored_methods(config: Mapping[str, Any]) -> list[str]:
    """Every method whose scores some target needs."""
    return list(dict.fromkeys([*config["methods"], *prune_methods(config)]))


def per_seed(config: Mapping[str, Any], name: str, **values: Any) -> list[str]:
    """Result file `name` of every seed."""
    return [result(config, name, seed=s, **values) for s in config["seeds"]]


def per_method(
    config: Mapping[str, Any], name: str, methods: Sequence[str], **values: Any
) -> list[str]:
    """Result file `name` of every (method, seed), method-major."""
    return [
        result(config, name, seed=s, method=m, **values)
        for m in methods
        for s in config["seeds"]
    ]


def relabel_files(config: Mapping[str, Any]) -> list[str]:
    return per_method(
        config, "relabel", config["relabel"]["methods"], mode=config["relabel"]["mode"]
    )


def relabel_baselines(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The relabel baselines the run has: oracle (the clean labels) only where the
    noise was injected, so the clean labels are known."""
    return RELABEL_BASELINES if has_noise(config) else ("predicted",)


def relabel_baseline_files(config: Mapping[str, Any]) -> list[str]:
    """Every baseline per seed, when the relabel experiment is on."""
    if not config["relabel"]["methods"]:
        return []
    return [
        path
        for setting in relabel_baselines(config)
        for path in per_seed(config, "relabel_baseline", setting=setting)
    ]


def prune_files(
    config: Mapping[str, Any], methods: Sequence[str] | None = None
) -> list[str]:
    """The pruning results of the given methods (default: every pruned one)."""
    methods = prune_methods(config) if methods is None else methods
    return [
        result(
            config,
            "prune",
            seed=s,
            method=m,
            order=config["prune"]["order"],
            fraction=fmt(float(f)),
        )
        for m in methods
        for s in config["seeds"]
        for f in config["prune"]["fractions"]
    ]


def has_noise(config: Mapping[str, Any]) -> bool:
    """Whether the run knows which labels are wrong: False for noise.kind none (the
    labels as given) and for symmetric or asymmetric noise of ratio 0 (e.g. the pruning
    presets). Without it nothing is graded against a mask: no detection metrics, no
    oracle relabel baseline, no true-label columns."""
    noise = config["noise"]
    if noise["kind"] == "none":
        return False
    return noise["kind"] == "human" or float(noise["ratio"]) > 0


def figure_files(config: Mapping[str, Any]) -> list[str]:
    """Per (method, seed): the label-issue table and gallery, and the train x test
    examples where the method has a kernel and queries are configured."""
    files = []
    for method in config["methods"]:
        files += per_method(config, "label_issues", [method])
        files += per_method(config, "gallery", [method])
        if config["queries"] > 0 and get_method(method).kernel:
            files += per_method(config, "examples", [method])
    return files


def summary_files(config: Mapping[str, Any]) -> list[str]:
    """The summary folder's tables and figures for the enabled experiments."""
    names = ["cost_table", "rule_cost_table", "rank_agreement_table"]
    names.append("rank_agreement_plot")
    if has_noise(config):
        names += ["detection_table", "detection_plot"]
    if config["relabel"]["methods"]:
        names += ["relabel_table", "relabel_plot"]
    if prune_methods(config):
        names += ["prune_table", "prune_plot"]
    issues = [
        result(config, name, method=method)
        for method in config["methods"]
        for name in ("label_issues_table", "label_issues_top")
    ]
    return [result(config, name) for name in names] + issues


def all_targets(config: Mapping[str, Any]) -> list[str]:
    """Every final artifact of the configured experiment (the `all` rule's input)."""
    targets = per_seed(config, "learning_curve")
    if has_noise(config):
        for name in ("detection", "histogram", "curves"):
            targets += per_method(config, name, config["methods"])
    return targets + figure_files(config) + summary_files(config)


def benchmark_files(config: Mapping[str, Any]) -> dict[str, dict[str, list[str]]]:
    """{rule: {method, "" for jobs every method shares, or "baselines": [benchmark file
    per job]}}; rules without jobs in this config have an empty dict."""
    files: dict[str, dict[str, list[str]]] = {
        "dataset": {"": [result(config, "data")]},
        "labels": {"": per_seed(config, "labels")},
        "pretrain": {"": per_seed(config, "model")},
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
        # a sharded method's scores.npz is written by the merge; its shard jobs are
        # listed in its timing.json (their number is known only once the data exist)
        scoring = "influence_gather" if method in sharded else "influence"
        files[scoring][method] = per_method(config, "scores", [method])
        if has_noise(config):
            files["detect"][method] = per_method(config, "detection", [method])
        if "ensemble" in get_method(method).needs:
            seeds = config["seeds"]
            files["ensemble_chains"][method] = [
                f for s in seeds for f in chain_files(config, s)
            ]
            files["calibrate"][method] = [
                f for s in seeds for f in calibration_files(config, s)
            ]
    for method in config["relabel"]["methods"]:
        files["relabel"][method] = per_method(
            config, "relabel", [method], mode=config["relabel"]["mode"]
        )
    if config["relabel"]["methods"]:
        files["relabel_baseline"]["baselines"] = relabel_baseline_files(config)
    for method in prune_methods(config):
        files["prune"][method] = prune_files(config, [method])
    return {
        rule: {key: [benchmark_file(f) for f in outputs] for key, outputs in by.items()}
        for rule, by in files.items()
    }
