"""Real Snakemake runs on bad input: each job fails with a message naming the problem,
and leaves no outputs, no provenance record and no resumable state behind.

One module fixture pretrains seed 0 of the smoke config (tests/smoke, one seed); each
test copies that working directory (with .snakemake/) and breaks one thing in it.
"""

import ast
import contextlib
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from gex_core.workflow import paths
from tests.workflow_util import ROOT, copy_workflow, snakemake

TRAIN = "sgd-e6-b128-lr0.1-wd0.0005-wu0.1-m0.9-T2-augnone"
RUN = f"results/digits/noise-sym0.2/mlp/{TRAIN}/seed0"
MODEL = f"{RUN}/pretrain/model.msgpack"
ENSEMBLE = "ensemble/ft-lr0.05-s10-b128-S1"
CHAIN = f"{RUN}/{ENSEMBLE}/chains0-1.npz"
CHAIN_LOG = paths.log_file(CHAIN)
PRETRAIN_OUTPUTS = (
    "model.msgpack",
    "trajectory.msgpack",
    "record.npz",
    "losses.npz",
    "history.tsv",
    "learning_curve.png",
)


def write_config(workdir: Path, **pretrain) -> None:
    """The smoke config with one seed and the given pretraining knobs changed."""
    config = yaml.safe_load((ROOT / "tests" / "smoke" / "config.yaml").read_text())
    config["seeds"] = [0]
    config["pretrain"] = {**config["pretrain"], **pretrain}
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("bad_input") / "workflow")


@pytest.fixture(scope="module")
def pretrained(workflow, tmp_path_factory):
    """(workflow, workdir) with seed 0 pretrained: data, labels and pretrain jobs."""
    workdir = tmp_path_factory.mktemp("pretrained") / "run"
    write_config(workdir)
    result = snakemake(workflow, workdir, MODEL, "--cores", "2")
    assert result.returncode == 0, result.stderr[-5000:]
    return workflow, workdir


def copy_run(pretrained, tmp_path: Path) -> Path:
    """A copy of the fixture's working directory, Snakemake's metadata included."""
    _, workdir = pretrained
    return Path(shutil.copytree(workdir, tmp_path / "run", symlinks=True))


def run_failing(workflow: Path, workdir: Path, *args: str) -> None:
    result = snakemake(workflow, workdir, *args)
    assert result.returncode != 0, result.stdout[-3000:] + result.stderr[-3000:]


def log_text(workdir: Path, log: str) -> str:
    path = workdir / log
    assert path.exists(), f"no job log {log}"
    return path.read_text()


def assert_no_pretrain_outputs(folder: Path) -> None:
    """No output and no provenance record of a failed pretraining job."""
    left = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert not set(left) & set(PRETRAIN_OUTPUTS), left
    assert not [name for name in left if name.endswith(".provenance.json")], left


class Payload:
    """Unpickling calls open(path, "w"): the file appears if anything unpickles it."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def assert_no_chain_outputs(workdir: Path) -> None:
    folder = workdir / RUN / ENSEMBLE
    for name in ("chains0-1.npz", "chains0-1.msgpack"):
        assert not (folder / name).exists(), name
    if folder.exists():
        assert not list(folder.glob("*.provenance.json"))


def test_pickle_payload_in_place_of_the_pretrained_model_is_refused_without_running(
    pretrained, tmp_path
):
    workflow, _ = pretrained
    workdir = copy_run(pretrained, tmp_path)
    # the payload is live: unpickling it creates the file it names
    pickle.loads(pickle.dumps(Payload(tmp_path / "control"))).close()
    assert (tmp_path / "control").exists()
    marker = tmp_path / "pickle_ran"
    (workdir / MODEL).write_bytes(pickle.dumps(Payload(marker)))
    # without its provenance record (a file put there by hand) the digest check has
    # nothing to compare with, so this is the checkpoint loader's own refusal
    Path(f"{workdir / MODEL}.provenance.json").unlink()
    # No flag needed: the overwritten model is still newer than pretraining's inputs,
    # so Snakemake plans only the chain job (checked with a dry run while writing this).
    run_failing(workflow, workdir, CHAIN, "--cores", "1")

    log = log_text(workdir, CHAIN_LOG)
    assert f"{MODEL}: not a gex-workflow checkpoint (flax msgpack expected): " in log
    assert not marker.exists()
    assert_no_chain_outputs(workdir)


def test_checkpoint_of_another_model_is_refused_naming_both_models(
    pretrained, tmp_path
):
    import jax

    from gex_core.training.models import make_model
    from gex_core.workflow.checkpoints import save_params
    from gex_core.workflow.provenance import write_provenance

    workflow, _ = pretrained
    workdir = copy_run(pretrained, tmp_path)
    # a cnn checkpoint copied from another run together with its provenance record
    cnn = make_model("cnn", 10, (8, 8, 1))
    save_params(workdir / MODEL, cnn.init(jax.random.key(0)))
    write_provenance(workdir / MODEL, {"rule": "pretrain", "params": {"model": "cnn"}})
    run_failing(workflow, workdir, CHAIN, "--cores", "1")

    log = log_text(workdir, CHAIN_LOG)
    assert (
        f"{MODEL}: checkpoint does not match the configured model 'mlp'; the file "
        "was written for model 'cnn' (rule pretrain) (missing [" in log
    )
    # the cnn's convolutions are extra to the mlp and its dense layers differ in shape
    assert "unexpected ['Conv_0/bias', 'Conv_0/kernel', 'Conv_1/bias']" in log
    assert "shape differences ['Dense_0/bias: file (128,) vs model (256,)'" in log
    assert_no_chain_outputs(workdir)


def test_diverging_pretraining_fails_naming_stage_step_and_hyperparameters_and_leaves_nothing(
    pretrained, tmp_path
):
    workflow, _ = pretrained
    workdir = copy_run(pretrained, tmp_path)  # its data and labels: only pretrain runs
    lr = 1.0e4
    write_config(workdir, lr=lr)  # safe_dump writes 10000.0, a float to PyYAML
    train = TRAIN.replace("lr0.1-", f"lr{lr!r}-")
    run = RUN.replace(TRAIN, train)
    run_failing(workflow, workdir, f"{run}/pretrain/model.msgpack", "--cores", "2")

    log = log_text(workdir, paths.log_file(MODEL.replace(TRAIN, train)))
    found = re.search(
        r"non-finite training loss in pretrain at step (\d+); hyperparameters: "
        r"(\{.*\})\. Lower the learning rate or check the data\.",
        log,
    )
    assert found, log[-3000:]
    assert "'lr': 10000.0" in found.group(2)
    assert ast.literal_eval(found.group(2)) == {
        "seed": 0,
        "epochs": 6,
        "batch_size": 128,
        "lr": lr,
        "weight_decay": 0.0005,
        "warmup_ratio": 0.1,
        "augment": "none",
    }
    assert int(found.group(1)) < 6 * 12  # 1437 samples: 12 steps an epoch

    assert_no_pretrain_outputs(workdir / run / "pretrain")
    resume = workdir / "resume"
    assert not resume.exists() or not [p for p in resume.rglob("*") if p.is_file()]


def test_truncated_dataset_file_is_named(pretrained, tmp_path):
    workflow, _ = pretrained
    workdir = copy_run(pretrained, tmp_path)
    data = workdir / "results/digits/data.npz"
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size // 2)
    shutil.rmtree(workdir / RUN / "pretrain")
    # The truncated file is newer than the labels made from it, so Snakemake would
    # rerun the labels job first (and fail there). This test is about pretraining
    # reading it: only pretrain may run. --allowed-rules takes several values, so the
    # target goes before it.
    run_failing(workflow, workdir, MODEL, "--cores", "1", "--allowed-rules", "pretrain")

    log = log_text(workdir, paths.log_file(MODEL))
    size = data.stat().st_size
    assert (
        f"results/digits/data.npz: it has {size} bytes, its job wrote {2 * size} "
        "(truncated?)" in log
    )
    assert "--forcerun results/digits/data.npz" in log
    assert_no_pretrain_outputs(workdir / RUN / "pretrain")
    # without the record, the reader names the file itself (the zip's central
    # directory was at the end, in the half cut off)
    Path(f"{data}.provenance.json").unlink()
    run_failing(workflow, workdir, MODEL, "--cores", "1", "--allowed-rules", "pretrain")
    assert (
        "results/digits/data.npz: not a readable .npz file (File is not a zip file)"
        in log_text(workdir, paths.log_file(MODEL))
    )


def folder_config(workdir: Path, data_dir: Path) -> None:
    config = yaml.safe_load((ROOT / "tests" / "smoke" / "config.yaml").read_text())
    config.update(dataset="folder", data_dir=str(data_dir), seeds=[0])
    config["noise"] = {"kind": "none"}
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def break_empty_class(root, files):
    (root / "train" / "emu").mkdir()
    return root / "train" / "emu", "is an empty class folder"


def break_truncated(root, files):
    files[3].write_bytes(files[3].read_bytes()[:-40])
    return files[3], "is not a readable image"


def break_size(root, files):
    from PIL import Image

    Image.fromarray(np.zeros((9, 8), np.uint8)).save(files[5])
    return files[5], "is 8x9 with 1 channel but"


def break_channels(root, files):
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(files[5])
    return files[5], "is 8x8 with 3 channels but"


def break_test_class(root, files):
    from tests.formats import write_image_folder

    write_image_folder(root, np.zeros((1, 8, 8, 1), np.uint8), [0], ["zebra"], "test")
    return root / "test" / "zebra", "is a test class with no folder"


def break_single_class(root, files):
    shutil.rmtree(root / "train" / "dog")
    return root / "train", "needs at least two class folders (only 'cat')"


@pytest.mark.parametrize(
    "breaks",
    [
        break_empty_class,
        break_truncated,
        break_size,
        break_channels,
        break_test_class,
        break_single_class,
    ],
)
def test_a_bad_image_folder_is_named_before_anything_is_written(
    workflow, tmp_path, breaks
):
    from tests.formats import write_image_folder

    rng = np.random.default_rng(0)
    root = tmp_path / "pets"
    images = rng.integers(0, 256, (12, 8, 8, 1), dtype=np.uint8)
    files = write_image_folder(root, images, np.arange(12) % 2, ["cat", "dog"])
    culprit, message = breaks(root, files)
    workdir = tmp_path / "run"
    folder_config(workdir, root)
    result = snakemake(workflow, workdir, "--cores", "1")
    assert result.returncode != 0, result.stdout[-3000:]
    assert f"{culprit} {message}" in result.stderr, result.stderr[-3000:]
    assert not (workdir / "results").exists()


def flip_one_byte(path: Path, offset: int | None = None) -> None:
    """Flip a byte in the middle of the file, keeping its size and modification time."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    offset = len(data) // 2 if offset is None else offset
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_one_flipped_byte_in_a_cached_artifact_is_named_or_rebuilt(
    pretrained, tmp_path, capsys
):
    """The model, the chain losses and the scores: a byte flipped in place (size and
    mtime kept, so Snakemake sees nothing) is a named error in the job that reads it,
    never used; `verify` lists it and its --forcerun command rebuilds it and what
    was made from it."""
    from gex_core.workflow.verify import main as verify

    workflow, _ = pretrained
    workdir = copy_run(pretrained, tmp_path)
    scores = f"{RUN}/influence/gex/ft-lr0.05-s10-b128-S1-K2-ref-pretrained/scores.npz"
    detection = scores.replace("scores.npz", "detection.json")
    result = snakemake(workflow, workdir, detection, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    for artifact, reader in (
        (MODEL, CHAIN),
        (CHAIN, scores),
        (scores, detection),
    ):
        flip_one_byte(workdir / artifact)
        Path(workdir / reader).unlink()  # the job that reads the artifact runs again
        run_failing(workflow, workdir, reader, "--cores", "1")
        log = log_text(workdir, paths.log_file(reader))
        assert f"{artifact}: its sha256 differs from the one its job recorded" in log
        assert not (workdir / reader).exists()
        flip_one_byte(workdir / artifact)  # restored: the next case starts clean
        if reader != detection:  # the rebuild below makes the last one again
            result = snakemake(workflow, workdir, reader, "--cores", "2")
            assert result.returncode == 0, result.stderr[-3000:]
    flip_one_byte(workdir / CHAIN)
    with contextlib.chdir(workdir):
        assert verify(["results"]) == 1
    printed = capsys.readouterr().out
    assert f"{CHAIN}: its sha256 differs" in printed
    command = printed.splitlines()[-1].removeprefix("Rebuild: snakemake ").split()
    assert command == ["--cores", "all", "--forcerun", CHAIN]
    before = (workdir / scores).stat().st_mtime_ns
    result = snakemake(workflow, workdir, detection, "--cores", "2", *command[2:])
    assert result.returncode == 0, result.stderr[-3000:]
    assert verify([str(workdir / "results")]) == 0
    assert (workdir / scores).stat().st_mtime_ns > before  # remade from the new chain
