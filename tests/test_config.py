"""Bad configs stop Snakemake before any job runs, with a message naming the key."""

import pytest
import yaml

from gex_core.workflow.config import ConfigError, validate_config
from tests.workflow_util import ROOT, snakemake

SCHEMA = ROOT / "schemas" / "config.schema.yaml"

CASES = {
    "unknown top-level key": ("modle: cnn\n", "config key modle: unknown key"),
    "unknown nested key": (
        "ensemble:\n  ft_step: 10\n",
        "config key ensemble.ft_step: unknown key",
    ),
    "string where a number belongs": (
        "pretrain:\n  epochs: 1e3\n",
        "config key pretrain.epochs: '1e3' is not of type 'integer' (YAML reads",
    ),
    "ratio outside [0, 1)": (
        "noise:\n  ratio: 1.0\n",
        "config key noise.ratio: 1.0 is greater than or equal to the maximum of 1",
    ),
    "negative ratio": (
        "noise:\n  ratio: -0.1\n",
        "config key noise.ratio: -0.1 is less than the minimum of 0",
    ),
    "unknown method": (
        "methods: [gex, tracin_typo]\n",
        "config key methods.1: 'tracin_typo' is not one of ['gex', 'la_kfac'",
    ),
    "unknown model": (
        "model: resnet50\n",
        "config key model: 'resnet50' is not one of",
    ),
    "wrong type for a list": (
        "seeds: 3\n",
        "config key seeds: 3 is not of type 'array'",
    ),
    "checkpoints that do not fit": (
        "pretrain:\n  epochs: 4\n  num_checkpoints: 5\n",
        "config key pretrain.num_checkpoints: 5 does not fit in the second half of "
        "pretrain.epochs=4",
    ),
    "data set files missing": (
        "dataset: cifar10\ndata_dir: nowhere\n",
        "cifar-10-binary.tar.gz",
    ),
    "NaN noise ratio": (
        "noise:\n  ratio: .nan\n",
        "config key noise.ratio: nan is not a finite number",
    ),
    "seed beyond the RNG's range": (
        "seeds: [0, 4294967296]\n",
        "config key seeds.1: 4294967296 is greater than the maximum of 4294967295",
    ),
    "a folder as the data file": (
        "dataset: npz\ndata_file: folder.npz\n",  # the test makes folder.npz/
        "folder.npz is a directory, not a file",
    ),
    "npz without its file": (
        "dataset: npz\n",
        "config key data_file: dataset npz needs the .npz to read",
    ),
    "human labels file missing": (
        "dataset: cifar10\nnoise:\n  kind: human\n  label_set: worse_label\n"
        "  label_file: CIFAR-10_human.csv\n",
        "cifar-10-binary.tar.gz",
    ),
}


# Run through real Snakemake: one schema error and one cross-field error (the Snakefile
# validates the config before it plans anything), and the cases named while planning
# (data files). Every case's message comes from the same validation, which
# test_bad_config_is_named_by_the_validation checks in this process, without Snakemake's
# start-up per case.
NAMED_WHILE_PLANNING = (
    "data set files missing",
    "a folder as the data file",
    "human labels file missing",
)
THROUGH_SNAKEMAKE = (
    "unknown nested key",
    "checkpoints that do not fit",
    *NAMED_WHILE_PLANNING,
)


@pytest.mark.parametrize("case", sorted(set(CASES) - set(NAMED_WHILE_PLANNING)))
def test_bad_config_is_named_by_the_validation(case):
    text, message = CASES[case]
    with pytest.raises(ConfigError) as error:
        validate_config(yaml.safe_load(text), SCHEMA)
    assert message in str(error.value)


@pytest.mark.parametrize("case", THROUGH_SNAKEMAKE)
def test_bad_config_fails_before_any_job(tmp_path, case):
    text, message = CASES[case]
    (tmp_path / "folder.npz").mkdir()
    (tmp_path / "config.yaml").write_text(text)
    result = snakemake(ROOT, tmp_path, "--cores", "1")
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_defaults_fill_a_partial_config(tmp_path):
    (tmp_path / "config.yaml").write_text("seeds: [4]\n")
    result = snakemake(ROOT, tmp_path, "-n", "--cores", "1")
    assert result.returncode == 0, result.stderr
    assert "seed4/ensemble/ft-lrauto-s100-b64-S2/chains0-3.npz" in result.stdout
    assert "seed4/ensemble/ft-lrauto-s100-b64-S2/calibration.json" in result.stdout
    assert (
        "seed4/influence/gex/ft-lrauto-s100-b64-S2-K4-ref-pretrained/" in result.stdout
    )


def test_nested_and_list_overrides_are_read_as_the_schema_types(tmp_path):
    """Snakemake passes these as text; they plan the runs they say."""
    (tmp_path / "config.yaml").write_text("methods: [gex]\n")
    result = snakemake(
        ROOT, tmp_path, "-n", "--cores", "1", "--config", "seeds=[3,4]",
        "noise={kind: symmetric, ratio: 0.2}", "pretrain={lr: 1e-2}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for seed in (3, 4):
        assert "noise-sym0.2/cnn/sgd-e60-b64-lr0.01-" in result.stdout
        assert f"/seed{seed}/influence/gex/" in result.stdout
    assert "/seed0/" not in result.stdout


def test_same_named_data_files_run_side_by_side(tmp_path):
    """Two files called x.npz in different folders: each run stores its own split in
    its own results folder, and the second leaves the first's intact."""
    import numpy as np
    import yaml

    from gex_core.workflow import paths
    from gex_core.workflow.config import validate_config
    from gex_core.workflow.io import read_npz

    rng = np.random.default_rng(0)
    stored = {}
    for folder in ("a", "b"):
        data = {
            "x_train": rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8),
            "y_train": np.arange(40) % 4,
            "x_test": rng.integers(0, 256, (12, 8, 8, 1), dtype=np.uint8),
            "y_test": np.arange(12) % 4,
        }
        (tmp_path / folder).mkdir()
        np.savez(tmp_path / folder / "x.npz", **data)
        config = {"dataset": "npz", "data_file": str(tmp_path / folder / "x.npz")}
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        validate_config(config, ROOT / "schemas" / "config.schema.yaml")
        target = paths.result(config, "data")
        result = snakemake(ROOT, tmp_path, target, "--cores", "1")
        assert result.returncode == 0, result.stderr[-3000:]
        stored[folder] = (tmp_path / target, data["x_train"])
    (a, x_a), (b, x_b) = stored["a"], stored["b"]
    assert a.parent != b.parent and a.parent.name.startswith("npz-x-")
    # each split holds its own file's images (the validation split moves rows, so
    # compare the sorted pixel sums)
    for path, x in ((a, x_a), (b, x_b)):
        arrays = read_npz(path, ("x_train", "x_val"))
        got = np.sort(
            np.concatenate([arrays["x_train"], arrays["x_val"]]).sum((1, 2, 3))
        )
        np.testing.assert_array_equal(got, np.sort(x.astype(np.int64).sum((1, 2, 3))))
