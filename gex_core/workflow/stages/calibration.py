"""Calibration stage: choose the fine-tuning learning rate of `ensemble.ft_lr: auto`."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from gex_core.api.ensemble import calibrate_with_pilots, piloted
from gex_core.evaluation.figures import calibration_curve
from gex_core.workflow.checkpoints import save_params
from gex_core.workflow.io import save_figure, write_json
from gex_core.workflow.stages.ensemble import (
    fine_tuning,
    load_pretrained_run,
    validation_split,
)


def run_calibration(
    *,
    data_path: str,
    labels_path: str,
    model_name: str,
    model_path: str,
    seed: int,
    recipe: Mapping[str, Any],
    chains: int,
    pretrain_recipe: Mapping[str, Any],
    eval_batch_size: int,
    outputs: Mapping[str, str],
) -> dict[str, Any]:
    """recipe: the chain recipe (calibration grid, tolerance, refine and pilot_chains,
    ft_steps, batch_size, augment); chains: the ensemble's chain count K; outputs:
    record (.json), plot (.png), pilots (.msgpack: the pilots at the chosen rate, in
    the order of the record's first_members, which are those chains' first members).
    Reads only the given (noisy)
    training labels of labels_path, never its clean labels or noise mask, and the
    validation split, never the test split."""
    data, model, pretrained = load_pretrained_run(
        data_path, labels_path, model_name, model_path
    )
    record, pilots = calibrate_with_pilots(
        model,
        pretrained,
        data.x_train,
        data.y_train,
        *validation_split(data, data_path),
        grid=recipe["calibration"]["grid"],
        tolerance=recipe["calibration"]["tolerance"],
        refine=recipe["calibration"]["refine"],
        chains=piloted(range(chains), recipe["calibration"]["pilot_chains"]),
        seed=seed,
        eval_batch_size=eval_batch_size,
        **fine_tuning(recipe, pretrain_recipe),
    )
    if not record["valid"]:
        print(
            "calibration: warning: no rate kept validation accuracy within "
            f"{record['tolerance']} of the pretrained model's "
            f"{record['pretrained_heldout_accuracy']:.3f}; using the smallest, "
            f"{record['ft_lr']}: GEX's members may not describe the data (lower "
            "ensemble.calibration.grid, or check ensemble.augment)",
            file=sys.stderr,
        )
    save_params(outputs["pilots"], [pilots[c] for c in record["first_members"]])
    write_json(outputs["record"], record)
    save_figure(
        outputs["plot"],
        calibration_curve(
            record, f"{model_name}, seed {seed}: ft_lr {record['ft_lr']}"
        ),
    )
    return record
