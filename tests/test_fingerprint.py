import shutil
from pathlib import Path

from gex_core.workflow.fingerprint import module_closure, source_fingerprint

ROOT = Path(__file__).resolve().parents[1]


def names(script, extra=()):
    closure = module_closure(ROOT / "workflow_scripts" / script, ROOT, extra)
    return {str(p.relative_to(ROOT)) for p in closure}


def test_closures_follow_imports_transitively():
    pretrain = names("pretrain.py")
    assert (
        "gex_core/training/fit.py" in pretrain
    )  # through gex_core.workflow.stages.pretrain
    assert "gex_core/training/models.py" in pretrain
    assert "gex_core/__init__.py" in pretrain
    assert "gex_core/influence/ensemble.py" not in pretrain
    chain = names("ensemble_chains.py")
    assert (
        "gex_core/influence/ensemble.py" in chain
        and "gex_core/training/fit.py" in chain
    )
    assert "gex_core/influence/gex.py" not in chain


def test_influence_closure_depends_on_the_method():
    gex = names("influence.py", ("gex_core.influence.gex",))
    randproj = names("influence.py", ("gex_core.influence.randproj",))
    assert "gex_core/influence/gex.py" in gex
    assert "gex_core/influence/randproj.py" not in gex
    assert "gex_core/influence/projection.py" in randproj


def test_editing_a_module_changes_exactly_the_dependent_fingerprints(tmp_path):
    for part in ("gex_core", "workflow_scripts"):
        shutil.copytree(ROOT / part, tmp_path / part)
    scripts = tmp_path / "workflow_scripts"
    before = {
        s: source_fingerprint(scripts / s, tmp_path)
        for s in ("pretrain.py", "ensemble_chains.py", "detect.py")
    }
    with open(tmp_path / "gex_core" / "influence" / "ensemble.py", "a") as f:
        f.write("\n# an edit\n")
    after = {s: source_fingerprint(scripts / s, tmp_path) for s in before}
    assert after["ensemble_chains.py"] != before["ensemble_chains.py"]
    assert after["pretrain.py"] == before["pretrain.py"]
    assert after["detect.py"] == before["detect.py"]
