import ast
import json
import os
import shutil
from pathlib import Path

import pytest

from gex_core.influence.registry import METHODS
from gex_core.workflow import fingerprint
from gex_core.workflow.fingerprint import module_closure, source_fingerprint

ROOT = Path(__file__).resolve().parents[1]
ENSEMBLE = Path("gex_core", "influence", "ensemble.py")
GEX = Path("gex_core", "influence", "gex.py")
BODIES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def names(script, extra=()):
    closure = module_closure(ROOT / "workflow_scripts" / script, ROOT, extra)
    return {str(p.relative_to(ROOT)) for p in closure}


def stages():
    """Every (script, extra modules) the Snakefile fingerprints: each job script, and
    the influence script once per method."""
    found = {
        path.name: (path.name, ()) for path in (ROOT / "workflow_scripts").glob("*.py")
    }
    for name, spec in METHODS.items():
        found[f"influence.py[{name}]"] = ("influence.py", (spec.module,))
    return found


@pytest.fixture
def tree(tmp_path):
    """A copy of the package and the job scripts, to edit."""
    for part in ("gex_core", "workflow_scripts"):
        shutil.copytree(ROOT / part, tmp_path / part)
    return tmp_path


def fingerprints(root):
    return {
        stage: source_fingerprint(root / "workflow_scripts" / script, root, extra)
        for stage, (script, extra) in stages().items()
    }


def rewrite(path, text):
    """Write `text` to `path`, the file's mtime moving on even within one clock tick
    (the parse cache is keyed by path, mtime and size)."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    after = max(path.stat().st_mtime_ns, before + 1)
    os.utime(path, ns=(after, after))


def edit(path, change):
    """Apply `change` (text -> text) to `path`; check that it changed the bytes."""
    text = path.read_text()
    changed = change(text)
    assert changed != text
    rewrite(path, changed)


def replace_once(old, new):
    def change(text):
        assert text.count(old) == 1, old
        return text.replace(old, new)

    return change


def add_comments(text):
    """A comment line before every top-level definition and a trailing comment on
    every import line (neither can fall inside a string)."""
    lines = []
    for line in text.splitlines():
        if line.startswith(("def ", "class ")):
            lines.append("# a comment about what follows")
        if line.startswith(("import ", "from ")) and "(" not in line:
            line += "  # why this import"
        lines.append(line)
    return "\n".join(lines) + "\n# a closing comment\n"


def change_docstrings(text):
    """Rewrite every docstring (module, class and function) to another text."""
    lines = text.splitlines(keepends=True)
    docstrings = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, BODIES):
            continue
        body = node.body
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            docstrings.append(body[0].value)
    assert len(docstrings) >= 3  # the module's, a class's and a function's
    # Bottom-up, so that earlier positions stay valid.
    for doc in sorted(docstrings, key=lambda d: (d.lineno, d.col_offset), reverse=True):
        start, end = doc.lineno - 1, doc.end_lineno - 1
        head, tail = lines[start][: doc.col_offset], lines[end][doc.end_col_offset :]
        lines[start : end + 1] = [f'{head}"""Reworded,\n\nat length."""{tail}']
    return "".join(lines)


def reformat(text):
    """Blank lines between top-level definitions, and every multi-line call without
    strings or comments joined onto one line (another style of its arguments)."""
    lines = text.splitlines(keepends=True)
    calls = [
        node
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Call) and node.end_lineno > node.lineno
    ]
    joined = 0
    taken: set[int] = set()
    for call in sorted(calls, key=lambda c: c.lineno, reverse=True):
        span = range(call.lineno - 1, call.end_lineno)
        segment = "".join(lines[i] for i in span)
        if (
            taken & set(span)
            or any(c in segment for c in "#'\"\\")
            or not all(lines[i].isascii() for i in span)  # offsets count bytes
        ):
            continue
        taken |= set(span)
        head = lines[span[0]][: call.col_offset]
        tail = lines[span[-1]][call.end_col_offset :]
        source = ast.get_source_segment(text, call)
        one_line = " ".join(part.strip() for part in source.splitlines())
        lines[span[0] : span[-1] + 1] = [head + one_line + tail]
        joined += 1
    assert joined >= 2
    spaced = []
    for line in lines:
        if line.startswith(("def ", "class ")):
            spaced.append("\n\n")
        spaced.append(line)
    return "".join(spaced)


def test_closures_follow_imports_transitively():
    pretrain = names("pretrain.py")
    assert "gex_core/training/fit.py" in pretrain
    assert "gex_core/training/models.py" in pretrain
    assert "gex_core/__init__.py" in pretrain  # parent packages run on import
    assert "gex_core/workflow/stages/__init__.py" in pretrain
    assert "gex_core/influence/ensemble.py" not in pretrain
    chain = names("ensemble_chains.py")
    assert "gex_core/influence/ensemble.py" in chain
    assert "gex_core/training/fit.py" in chain
    assert "gex_core/influence/gex.py" not in chain
    # The script itself is not part of its closure (Snakemake tracks it).
    assert not any(name.startswith("workflow_scripts/") for name in chain)


def test_influence_closure_depends_on_the_method():
    gex = names("influence.py", ("gex_core.influence.gex",))
    randproj = names("influence.py", ("gex_core.influence.randproj",))
    assert "gex_core/influence/gex.py" in gex
    assert "gex_core/influence/randproj.py" not in gex
    assert "gex_core/influence/projection.py" in randproj
    assert "gex_core/influence/gex.py" not in randproj


@pytest.mark.parametrize(
    "change", [add_comments, change_docstrings, reformat], ids=lambda c: c.__name__
)
def test_comments_docstrings_and_formatting_do_not_count(tree, change):
    before = fingerprints(tree)
    edit(tree / ENSEMBLE, change)
    after = fingerprints(tree)
    assert after == before


def test_a_code_edit_changes_exactly_the_dependent_fingerprints(tree):
    before = fingerprints(tree)
    edit(
        tree / ENSEMBLE,
        replace_once("CHECKPOINT_CHUNK_STEPS = 10\n", "CHECKPOINT_CHUNK_STEPS = 20\n"),
    )
    after = fingerprints(tree)
    assert after["ensemble_chains.py"] != before["ensemble_chains.py"]
    assert after["pretrain.py"] == before["pretrain.py"]
    assert after["detect.py"] == before["detect.py"]


def test_editing_a_method_changes_only_its_influence_fingerprint(tree):
    before = fingerprints(tree)

    def change(text):
        tree_ = ast.parse(text)
        numbers = [
            node
            for node in ast.walk(tree_)
            if isinstance(node, ast.Constant)
            and type(node.value) in (int, float)
            and node.lineno == node.end_lineno
        ]
        assert numbers
        last = max(numbers, key=lambda n: (n.lineno, n.col_offset))
        lines = text.splitlines(keepends=True)
        line = lines[last.lineno - 1]
        lines[last.lineno - 1] = (
            line[: last.col_offset] + repr(last.value + 1) + line[last.end_col_offset :]
        )
        return "".join(lines)

    edit(tree / GEX, change)
    after = fingerprints(tree)
    assert after["influence.py[gex]"] != before["influence.py[gex]"]
    assert after["influence.py[randproj]"] == before["influence.py[randproj]"]
    for script in ("ensemble_chains.py", "pretrain.py", "calibrate.py"):
        assert after[script] == before[script], script


def make_package(root, module):
    (root / "gex_core").mkdir()
    (root / "gex_core" / "__init__.py").write_text("")
    (root / "gex_core" / "m.py").write_text(module)
    (root / "script.py").write_text("from gex_core.m import f\n")
    return root / "script.py"


MODULE = '''"""Module doc."""

LABEL: str = "chains"


def f(x: int) -> int:
    """Function doc."""
    "a string statement that is not a docstring"
    return x + 1
'''


@pytest.mark.parametrize(
    ("old", "new", "counts"),
    [
        ('"""Module doc."""', '"""Other doc."""', False),
        ('"""Function doc."""', "'Other doc.'", False),
        ("return x + 1", "return (\n        x + 1\n    )  # same", False),
        ('"chains"', '"members"', True),  # a string literal that is not a docstring
        ("x: int", "x: float", True),  # an annotation
        ("a string statement", "another string statement", True),
        ("x + 1", "x + 2", True),
    ],
)
def test_what_counts_as_code(tmp_path, old, new, counts):
    script = make_package(tmp_path, MODULE)
    before = source_fingerprint(script, tmp_path)
    module = tmp_path / "gex_core" / "m.py"
    edit(module, replace_once(old, new))
    assert (source_fingerprint(script, tmp_path) != before) is counts


def test_the_module_path_counts(tmp_path):
    script = make_package(tmp_path, MODULE)
    before = source_fingerprint(script, tmp_path)
    (tmp_path / "gex_core" / "m.py").rename(tmp_path / "gex_core" / "n.py")
    (tmp_path / "gex_core" / "m").mkdir()
    (tmp_path / "gex_core" / "n.py").rename(tmp_path / "gex_core" / "m" / "__init__.py")
    assert source_fingerprint(script, tmp_path) != before


def test_each_file_is_parsed_once(tree):
    fingerprint._parse.cache_clear()
    fingerprints(tree)
    fingerprints(tree)
    files = set()
    for script, extra in stages().values():
        path = tree / "workflow_scripts" / script
        files |= {path, *module_closure(path, tree, extra)}
    info = fingerprint._parse.cache_info()
    assert info.misses == len(files)
    assert info.hits > info.misses


def test_the_dataset_stage_holds_only_the_configured_reader():
    from gex_core.data.load import reader_module

    mnist = names("make_dataset.py", (reader_module("mnist"),))
    assert "gex_core/data/readers/idx.py" in mnist
    assert "gex_core/data/readers/svhn.py" not in mnist
    digits = names("make_dataset.py")
    assert not [name for name in digits if "/readers/" in name and "common" not in name]
    assert reader_module("digits") is None


def forget_parses():
    """What a new process knows: no parse in memory (the cache file stays)."""
    fingerprint._parse.cache_clear()
    fingerprint._parse_cache.cache_clear()


def test_a_new_process_reads_the_parses_from_the_cache_file(tree, monkeypatch):
    shutil.rmtree(tree / "gex_core" / "__pycache__", ignore_errors=True)
    forget_parses()
    before = fingerprints(tree)
    cache = tree / fingerprint.PARSE_CACHE
    assert len(json.loads(cache.read_text())) >= 80  # every file of the closures
    forget_parses()
    parsed = []
    parse_source = fingerprint._parse_source
    monkeypatch.setattr(
        fingerprint,
        "_parse_source",
        lambda source, name: parsed.append(name) or parse_source(source, name),
    )
    assert fingerprints(tree) == before and parsed == []
    edit(tree / GEX, lambda text: text + "\n_EDITED = 1\n")  # a code change
    forget_parses()
    after = fingerprints(tree)
    assert parsed == [str(tree / GEX)]  # only the edited file is parsed again
    importers = {
        stage
        for stage, (script, extra) in stages().items()
        if tree / GEX in module_closure(tree / "workflow_scripts" / script, tree, extra)
    }
    assert "influence.py[gex]" in importers and "pretrain.py" not in importers
    assert {s for s in before if after[s] != before[s]} == importers


@pytest.mark.parametrize("cache_text", ["not json", "[1, 2]", '{"key": 3}', None])
def test_a_corrupt_or_foreign_parse_cache_is_not_used(tree, monkeypatch, cache_text):
    """None: the cache holds wrong parses of these very files, made under other rules
    (another Python, or another version of fingerprint.py)."""
    shutil.rmtree(tree / "gex_core" / "__pycache__", ignore_errors=True)
    forget_parses()
    want = fingerprints(tree)
    cache = tree / fingerprint.PARSE_CACHE
    if cache_text is None:
        cache.unlink()
        forget_parses()
        with monkeypatch.context() as other:
            other.setattr(fingerprint, "_parse_rules", lambda: "3.99|other")
            wrong = fingerprint._Parsed(frozenset(), bytes(32))
            other.setattr(fingerprint, "_parse_source", lambda source, name: wrong)
            assert fingerprints(tree) != want
    else:
        cache.write_text(cache_text)
    forget_parses()
    assert fingerprints(tree) == want


def test_an_unwritable_parse_cache_changes_nothing(tree):
    shutil.rmtree(tree / "gex_core" / "__pycache__", ignore_errors=True)
    forget_parses()
    want = fingerprints(tree)
    shutil.rmtree(tree / "gex_core" / "__pycache__")
    (tree / "gex_core" / "__pycache__").write_text("a file, not a folder")
    forget_parses()
    assert fingerprints(tree) == want
