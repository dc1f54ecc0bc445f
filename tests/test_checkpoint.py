import pickle

import jax
import numpy as np
import pytest

from gex_core.training.models import make_model
from gex_core.workflow.checkpoints import load_params, load_params_list, save_params
from gex_core.workflow.provenance import write_provenance


@pytest.fixture(scope="module")
def models():
    return make_model("mlp", 10, (8, 8, 1)), make_model("cnn", 10, (8, 8, 1))


def test_round_trip_is_exact(tmp_path, models):
    mlp, _ = models
    params = mlp.init(jax.random.key(0))
    save_params(tmp_path / "m.msgpack", params)
    back = load_params(tmp_path / "m.msgpack", mlp.init(jax.random.key(1)))
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back), strict=True):
        np.testing.assert_array_equal(a, b)
    save_params(tmp_path / "list.msgpack", [params, params])
    assert len(load_params_list(tmp_path / "list.msgpack", params)) == 2


def test_checkpoint_of_another_model_is_refused_with_both_shapes(tmp_path, models):
    mlp, cnn = models
    save_params(tmp_path / "cnn.msgpack", cnn.init(jax.random.key(0)))
    with pytest.raises(ValueError, match="does not match the configured model") as err:
        load_params(tmp_path / "cnn.msgpack", mlp.init(jax.random.key(0)))
    assert "cnn.msgpack" in str(err.value)
    assert "no provenance record" in str(err.value)
    # with the record the workflow writes beside it, both models are named
    write_provenance(
        tmp_path / "cnn.msgpack", {"rule": "pretrain", "params": {"model": "cnn"}}
    )
    with pytest.raises(ValueError) as err:
        load_params(tmp_path / "cnn.msgpack", mlp.init(jax.random.key(0)), "mlp")
    assert (
        "does not match the configured model 'mlp'; the file was written for "
        "model 'cnn' (rule pretrain)" in str(err.value)
    )
    assert "shape differences" in str(err.value)


def test_pickle_payload_is_refused_without_running(tmp_path, models):
    mlp, _ = models
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "evil.msgpack").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ValueError, match="not a gex-workflow checkpoint"):
        load_params(tmp_path / "evil.msgpack", mlp.init(jax.random.key(0)))
    assert not marker.exists()
