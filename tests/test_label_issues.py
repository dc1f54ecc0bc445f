"""Label issues in a user's own image folder (noise.kind none): the workflow's tables
and gallery, and the API giving the same table for the same config and seed."""

import numpy as np
import pandas as pd
import pytest
import yaml

from gex_core import api
from gex_core.data.datasets import load_digits, normalise_images
from gex_core.evaluation.label_issues import label_issue_table, seed_aggregate
from gex_core.workflow import paths
from gex_core.workflow.artifacts import read_dataset
from gex_core.workflow.config import label_issue_options, validate_config
from gex_core.workflow.io import write_table
from tests.formats import as_uint8, write_image_folder
from tests.workflow_util import ROOT, copy_workflow, snakemake

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MOVED = 12  # training images put in a wrong class folder


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """The smoke config on digits written as PNG class folders, some training images
    in the wrong folder, noise.kind none, one seed."""
    base = tmp_path_factory.mktemp("folder")
    digits = load_digits()
    labels = digits.y_train.copy()
    moved = np.random.default_rng(0).choice(labels.size, MOVED, replace=False)
    labels[moved] = (labels[moved] + 3) % 10
    root = base / "digit_pngs"
    write_image_folder(root, as_uint8(digits.x_train), labels, NAMES)
    write_image_folder(root, as_uint8(digits.x_test), digits.y_test, NAMES, "test")
    config = yaml.safe_load((ROOT / "tests" / "smoke" / "config.yaml").read_text())
    config.update(dataset="folder", data_dir=str(root), seeds=[0], queries=0)
    config["noise"] = {"kind": "none"}
    config["relabel"] = {"methods": ["gex"], "mode": "soft"}
    config["prune"] = {"methods": []}
    workdir = base / "run"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    workflow = copy_workflow(base / "workflow")
    result = snakemake(workflow, workdir, "--cores", "2")
    assert result.returncode == 0, result.stderr[-5000:]
    validate_config(config, ROOT / "schemas" / "config.schema.yaml")
    return workdir, config, root


def read(path):
    return pd.read_csv(path, sep="\t", keep_default_na=False)


def test_the_table_names_classes_and_files_and_nothing_is_graded(folder_run):
    workdir, config, root = folder_run
    table = read(workdir / paths.result(config, "label_issues", seed=0, method="gex"))
    assert list(table.columns) == [
        "index",
        "file",
        "given_label",
        "suggested_label",
        "suggested_probability",
        "score",
        "rank",
        "flagged",
    ]
    assert table["rank"].tolist() == list(range(1, len(table) + 1))
    assert table.score.is_monotonic_decreasing
    # each file is the image's path under data_dir, in its given class's folder
    assert (table.file.str.split("/").str[1] == table.given_label).all()
    assert all((root / f).is_file() for f in table.file)
    assert set(table.suggested_label) <= set(NAMES)
    assert (table.suggested_label != table.given_label).all()
    # no mask, so no detection metrics and no oracle baseline are written
    assert not list(workdir.rglob("detection*"))
    assert not list(workdir.rglob("oracle.json"))
    relabel = read(workdir / paths.result(config, "relabel_table"))
    assert "precision" not in relabel and "changed" in relabel
    summary = read(workdir / paths.result(config, "label_issues_table", method="gex"))
    assert (summary["index"] == table["index"]).all()  # one seed: the same order
    assert summary.flagged_seeds.tolist() == table.flagged.astype(int).tolist()
    assert (summary.seeds == 1).all()
    top = read(workdir / paths.result(config, "label_issues_top", method="gex"))
    assert len(top) == config["figures"]["gallery"]


@pytest.mark.parametrize("method", ["gex", "randproj"])
def test_the_api_gives_the_workflows_table(folder_run, tmp_path, method):
    """The workflow's stored splits (train, validation, test) through the API with
    the config's options: the same table, file for file."""
    workdir, config, root = folder_run
    data = read_dataset(str(workdir / paths.result(config, "data")))
    table = api.find_label_issues(
        data.x_train,
        data.y_train,
        x_test=data.x_test,
        y_test=data.y_test,
        x_val=data.x_val,
        y_val=data.y_val,
        method=method,
        seed=0,
        class_names=data.class_names,
        files=data.train_files,
        **label_issue_options(config, method),
    )
    write_table(tmp_path / "api.tsv", table)
    workflow = workdir / paths.result(config, "label_issues", seed=0, method=method)
    pd.testing.assert_frame_equal(read(tmp_path / "api.tsv"), read(workflow))


def test_the_folder_reads_the_same_through_the_api(folder_run):
    """load_image_folder and the workflow's stored split hold the same images; the
    workflow's training and validation rows together are the folder's training set."""
    workdir, config, root = folder_run
    stored = read_dataset(str(workdir / paths.result(config, "data")))
    data = api.load_image_folder(root)
    assert data.class_names == stored.class_names
    assert len(stored.y_train) + len(stored.y_val) == len(data.y_train)
    rows = {f: i for i, f in enumerate(data.train_files)}
    picked = [rows[f] for f in stored.train_files]
    np.testing.assert_array_equal(
        normalise_images(data.x_train[picked]), stored.x_train
    )
    np.testing.assert_array_equal(data.y_train[picked], stored.y_train)


def test_seed_aggregate_by_hand():
    """Two seeds, three samples, the given labels shared: mean ranks, flags counted,
    the suggestion from the mean of the probabilities without the given class."""
    given = np.array([0, 1, 1])
    probs = [
        np.array([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1]]),
        np.array([[0.5, 0.1, 0.4], [0.3, 0.6, 0.1], [0.2, 0.3, 0.5]]),
    ]
    tables = [
        label_issue_table(np.array([3.0, 1.0, 2.0]), given, probs[0], threshold=1.5),
        label_issue_table(np.array([1.0, 2.0, 3.0]), given, probs[1], threshold=2.5),
    ]
    table = seed_aggregate(tables, probs, true=np.array([0, 1, 0]))
    # mean ranks: sample 0 (1+3)/2 = 2, sample 1 (3+2)/2 = 2.5, sample 2 (2+1)/2 = 1.5
    assert table["index"].tolist() == [2, 0, 1]
    assert table.mean_rank.tolist() == [1.5, 2.0, 2.5]
    assert table.flagged_seeds.tolist() == [2, 1, 0]
    # sample 2 (given 1): class 0 (0.6 + 0.2) / 2 = 0.4 beats class 2 (0.3)
    assert table.suggested_label.tolist() == [0, 2, 0]
    np.testing.assert_allclose(table.suggested_probability, [0.4, 0.3, 0.2])
    assert table.noisy.tolist() == [True, False, False]
    # labels drawn per seed: no shared given label, noise counted per seed
    other = label_issue_table(np.array([1.0, 2.0, 3.0]), [0, 2, 1], probs[1], 2.5)
    table = seed_aggregate([tables[0], other], probs, true=np.array([0, 1, 0]))
    assert "given_label" not in table
    assert table.set_index("index").sort_index().noisy_seeds.tolist() == [0, 1, 2]
