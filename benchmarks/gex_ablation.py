"""Faithful GEX and one change at a time towards today's default, on fresh seeds.

    python benchmarks/gex_ablation.py [--out benchmarks/out/gex_ablation]
        [--seeds 10 11 12 13 14] [--setting sym0.1] [--study ablation|members|refine]
        [--cores N] [--reuse]

`faithful` follows the research release (configs/gex_faithful.yaml): the
paper's clamped reference max(pretrained loss, tau) with tau 0.05, ft_lr 0.05 with a
cosine schedule per stage, 800 steps a stage, 32 members (8 chains x 4 stages, the
research code's 8-device layout) at digits' pretraining batch, softmax cross-entropy.
Each further row changes one factor of it to the repository's default (config.yaml):
the reference (pretrained loss), ft_lr (auto: calibrated on the validation split),
steps (100), members (8: 4 chains x 2 stages); the last row is the default itself.
The loss is softmax cross-entropy in both, so it has no row. Every row runs the real
workflow (one workdir, pretraining shared) with `gex` and the `member_loss` control
(the same members' mean loss), relabel and prune off. Writes <out>/results.md: per
row the ROC-AUC and AP of both (mean ± std over seeds), GEX's members kept per seed,
and the paired bootstrap 95% interval of ΔAUC and ΔAP = row − faithful for GEX.

`--study members` (for the development seeds 0-2) asks whether more, cheaper members
help at the default's cost of 800 fine-tuning steps a seed: the default (4 chains x 2
stages x 100 steps), 8 x 2 x 50 and 16 x 1 x 50, each with `el2n` (the baseline to
beat) beside gex and the control; Δ is then against the default. `--study refine`
compares the default calibration with two bisecting refinement pilots
(`ensemble.calibration.refine: 2`).
"""

from __future__ import annotations

import argparse
import copy
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.default_run import commit  # noqa: E402
from benchmarks.fresh_seeds import failure, interval_text, noise_config  # noqa: E402
from gex_core.evaluation.metrics import detection_metrics  # noqa: E402
from gex_core.workflow import paths  # noqa: E402
from gex_core.workflow.artifacts import load_members, load_scores  # noqa: E402
from gex_core.workflow.config import validate_config  # noqa: E402
from gex_core.workflow.io import read_npz  # noqa: E402

SCHEMA = ROOT / "schemas" / "config.schema.yaml"
FAITHFUL = yaml.safe_load((ROOT / "configs" / "gex_faithful.yaml").read_text())


def merged(base: dict, change: dict) -> dict:
    """base with change's keys set, nested dictionaries merged key by key."""
    out = copy.deepcopy(base)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def variants(default: dict) -> dict[str, dict]:
    """Row label -> full config: faithful, one factor changed, and the default."""
    faithful = merged(default, FAITHFUL)
    ensemble, gex = default["ensemble"], default["influence"]["gex"]
    return {
        "faithful (clamped, ft_lr 0.05, 800 steps, M 32)": faithful,
        f"reference {gex['reference']}": merged(
            faithful, {"influence": {"gex": {"reference": gex["reference"]}}}
        ),
        f"ft_lr {ensemble['ft_lr']}": merged(
            faithful, {"ensemble": {"ft_lr": ensemble["ft_lr"]}}
        ),
        f"ft_steps {ensemble['ft_steps']}": merged(
            faithful, {"ensemble": {"ft_steps": ensemble["ft_steps"]}}
        ),
        f"members {ensemble['chains'] * ensemble['stages']}": merged(
            faithful,
            {"ensemble": {"chains": ensemble["chains"], "stages": ensemble["stages"]}},
        ),
        "default (all of the above)": default,
    }


def members_study(default: dict) -> dict[str, dict]:
    """Row label -> full config: the default, then more members at its step count."""
    rows = {"default (4 x 2 x 100 steps)": default}
    for chains, stages, steps in ((8, 2, 50), (16, 1, 50)):
        change = {"chains": chains, "stages": stages, "ft_steps": steps}
        rows[f"{chains} x {stages} x {steps} steps"] = merged(
            default, {"ensemble": change}
        )
    return rows


def refine_study(default: dict) -> dict[str, dict]:
    """Row label -> full config: the default, then the calibration refined by two
    bisecting pilots (every chain piloted at the choice, so pushing towards the edge
    no longer risks the chains chain 0 does not see)."""
    refined = {"ensemble": {"calibration": {"refine": 2}}}
    return {"default (refine 0)": default, "refine 2": merged(default, refined)}


STUDIES = {
    "ablation": (variants, ["gex", "member_loss"]),
    "members": (members_study, ["gex", "member_loss", "el2n"]),
    "refine": (refine_study, ["gex", "member_loss", "el2n"]),
}


def run(out: Path, name: str, config: dict, cores: str) -> None:
    file = out / "configs" / f"{name}.yaml"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]
    command += ["--directory", str(out), "--configfile", str(file)]
    command += ["--cores", cores, "--keep-going"]
    subprocess.run(command, capture_output=True)


def row_scores(out: Path, config: dict, method: str) -> dict[int, np.ndarray]:
    found = {}
    for seed in config["seeds"]:
        path = out / paths.result(config, "scores", seed=seed, method=method)
        if path.exists():
            found[seed] = load_scores(path).self_influence
    return found


def summary(values: list[float]) -> str:
    if not values:
        return "—"
    spread = np.std(values, ddof=1) if len(values) > 1 else 0.0
    return f"{np.mean(values):.4f} ± {spread:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks/out/gex_ablation"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12, 13, 14])
    parser.add_argument("--setting", default="sym0.1")
    parser.add_argument("--study", choices=sorted(STUDIES), default="ablation")
    parser.add_argument("--cores", default="all")
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    if not args.reuse:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    default = yaml.safe_load((ROOT / "config.yaml").read_text())
    default.update(seeds=args.seeds, noise=noise_config(args.setting))
    study, methods = STUDIES[args.study]
    default.update(methods=methods)
    default.update(relabel={"methods": []}, prune={"methods": []})
    (out / "config.yaml").write_text(yaml.safe_dump(default))
    rows, notes, faithful_scores, masks = [], [], None, None
    start = time.perf_counter()
    for index, (label, config) in enumerate(study(default).items()):
        run(out, f"row{index}", config, args.cores)
        validate_config(config, SCHEMA)
        masks = masks or {
            s: read_npz(out / paths.result(config, "labels", seed=s), ("mask",))[
                "mask"
            ].astype(bool)
            for s in args.seeds
        }
        scores = {m: row_scores(out, config, m) for m in methods}
        gex = scores["gex"]
        kept = []
        for seed in args.seeds:
            path = out / paths.result(config, "scores", seed=seed, method="gex")
            members = load_members(path) if path.exists() else None
            if members is None:
                notes.append(
                    f"{label}, seed {seed}: {failure(out, config, seed, 'gex')}"
                )
            kept.append("failed" if members is None else str(members[0]))
        total = config["ensemble"]["chains"] * config["ensemble"]["stages"]
        row = {"change": label, "kept": f"{', '.join(kept)} of {total}"}
        for method, by_seed in scores.items():
            for metric in ("auc", "ap"):
                row[f"{method}_{metric}"] = summary(
                    [detection_metrics(x, masks[s])[metric] for s, x in by_seed.items()]
                )
        if faithful_scores is None:
            faithful_scores = gex
        else:
            common = [s for s in gex if s in faithful_scores]
            for metric in ("auc", "ap"):
                row[f"delta_{metric}"] = interval_text(
                    [gex[s] for s in common],
                    [faithful_scores[s] for s in common],
                    [masks[s] for s in common],
                    metric,
                )
        rows.append(row)
    minutes = (time.perf_counter() - start) / 60
    lines = [
        f"commit {commit()}, `python benchmarks/gex_ablation.py --seeds "
        f"{' '.join(map(str, args.seeds))} --setting {args.setting} --study "
        f"{args.study}`; digits {args.setting}, {minutes:.0f} minutes; mean ± std over "
        "seeds; Δ: GEX of the row − GEX of the first row, paired bootstrap 95% "
        "interval (1,000 resamples)",
        "",
        *(f"- {note}" for note in notes),
        "",
        "| row | members kept per seed | GEX AUC | GEX AP | ΔAUC | ΔAP | "
        + " | ".join(f"{m} AUC | {m} AP" for m in methods[1:])
        + " |",
        "|---" * (6 + 2 * len(methods[1:])) + "|",
    ]
    for r in rows:
        others = " | ".join(f"{r[f'{m}_auc']} | {r[f'{m}_ap']}" for m in methods[1:])
        lines.append(
            f"| {r['change']} | {r['kept']} | {r['gex_auc']} | {r['gex_ap']} "
            f"| {r.get('delta_auc', '—')} | {r.get('delta_ap', '—')} | {others} |"
        )
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
