"""The GPU check script runs its whole pipeline on a CPU at its tiny size."""

import re
import subprocess
import sys

import pytest

from tests.workflow_util import ROOT


@pytest.mark.slow
def test_gpu_check_runs_the_mnist_shaped_pipeline_at_its_tiny_size(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--size", "tiny",
         "--out", str(tmp_path / "run"), "--cores", "2"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    text = result.stdout
    assert "tiny: 200 training images of 28x28x1, cnn" in text
    for stage in ("pretrain", "calibrate", "ensemble_chains", "influence", "detect"):
        assert re.search(rf"^  {stage} +\d+\.\d s$", text, re.M), stage
    auc = float(re.search(r"GEX detection AUC (\d\.\d+)", text).group(1))
    assert 0.0 <= auc <= 1.0
    ratio = re.search(r"forward passes at the best batch size\): (\d+\.\d+)", text)
    assert ratio and float(ratio.group(1)) > 0
