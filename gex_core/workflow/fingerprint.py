"""Per-stage source fingerprints: a hash of the gex_core modules a job script imports.

Snakemake reruns a job when its script changes but not when a library module it imports
changes. Passing this fingerprint through `params:` makes an edit of gex_core mark stale
exactly the stages whose scripts (transitively) import the edited module.

Each module counts by its code, not its bytes: the digest is over the module's AST with
docstrings removed, so comments, blank lines, formatting and docstrings do not rerun
stages, while any change to code (string literals and annotations included) does.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import json
import sys
from pathlib import Path
from typing import NamedTuple

PACKAGE = "gex_core"

_BODIES = (
    ast.Module,
    ast.ClassDef,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
)


class _Parsed(NamedTuple):
    imports: frozenset[str]  # gex_core modules the file imports
    code_digest: bytes  # sha256 of the normalised code: ast.dump, no docstrings


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _is_type_checking(test: ast.expr) -> bool:
    """`TYPE_CHECKING` or `typing.TYPE_CHECKING`."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _scan(tree: ast.Module) -> frozenset[str]:
    """The gex_core modules `tree` imports (anywhere in it); drops, in place and in the
    same walk, the docstrings: the leading string-constant expression statement of the
    module's and every class's and function's body. Imports under `if TYPE_CHECKING:`
    never run, so they do not count."""
    modules = set()
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node.test)
        for statement in node.body
        for inner in ast.walk(statement)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.module and node.level == 0:
                modules.add(node.module)
                modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, _BODIES) and node.body and _is_docstring(node.body[0]):
            del node.body[0]
    return frozenset(m for m in modules if m == PACKAGE or m.startswith(PACKAGE + "."))


def _parse_source(source: bytes, filename: str) -> _Parsed:
    tree = ast.parse(source, filename=filename)
    imports = _scan(tree)
    code = ast.dump(tree, annotate_fields=True, include_attributes=False)
    return _Parsed(imports, hashlib.sha256(code.encode()).digest())


# Parses remembered across processes: every Snakemake start (and every cluster job)
# would otherwise parse the ~90 files again, a quarter of a second. An entry is keyed by
# the file's bytes, so an edited file is parsed again; the key also holds Python's
# version (ast.dump's output changes with it) and this module's own source (the rules
# that made the entry). The file sits in the package's __pycache__, beside Python's own
# bytecode cache of the same sources.
PARSE_CACHE = Path(PACKAGE) / "__pycache__" / "gex-fingerprints.json"
PARSE_CACHE_ENTRIES = 2048


@functools.cache
def _parse_rules() -> str:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"{version}|{hashlib.sha256(Path(__file__).read_bytes()).hexdigest()}"


def _read_cache_file(path: Path) -> dict:
    """A cache file's JSON object; {} when it is missing, unreadable or not an object
    (it is only a cache)."""
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def _write_cache_file(path: Path, entries: dict, limit: int) -> None:
    """Write the newest `limit` of entries (insertion order) atomically; a file that
    cannot be written (a read-only folder) is left as it is."""
    from gex_core.workflow.io import atomic_path

    newest = dict(list(entries.items())[-limit:])
    with contextlib.suppress(OSError), atomic_path(path) as tmp:
        tmp.write_text(json.dumps(newest))


class _ParseCache:
    """The JSON file {key: [imports, code digest hex]} of one package root, read once;
    `save` writes it back when parses were added."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.added = False
        self.entries = _read_cache_file(path)

    def get(self, source: bytes, filename: str) -> _Parsed:
        key = f"{_parse_rules()}|{hashlib.sha256(source).hexdigest()}"
        entry = self.entries.get(key)
        with contextlib.suppress(TypeError, ValueError):
            imports, digest = entry
            if isinstance(imports, list) and all(isinstance(m, str) for m in imports):
                code_digest = bytes.fromhex(digest)
                if len(code_digest) == hashlib.sha256().digest_size:
                    return _Parsed(frozenset(imports), code_digest)
        parsed = _parse_source(source, filename)
        self.entries[key] = [sorted(parsed.imports), parsed.code_digest.hex()]
        self.added = True
        return parsed

    def save(self) -> None:
        if self.added:
            _write_cache_file(self.path, self.entries, PARSE_CACHE_ENTRIES)
            self.added = False


@functools.cache
def _parse_cache(package_root: Path) -> _ParseCache:
    return _ParseCache(package_root / PARSE_CACHE)


@functools.cache
def _parse(path: Path, mtime_ns: int, size: int, package_root: Path) -> _Parsed:
    """One parse per version of a file, for both its imports and its normalised code:
    the Snakefile fingerprints every job script, and the scripts share most modules
    (and every cluster job parses the workflow again)."""
    return _parse_cache(package_root).get(path.read_bytes(), str(path))


def _parsed(path: Path, package_root: Path) -> _Parsed:
    stat = path.stat()
    return _parse(path, stat.st_mtime_ns, stat.st_size, package_root)


def _module_file(package_root: Path, module: str) -> Path | None:
    parts = module.split(".")
    as_file = package_root.joinpath(*parts).with_suffix(".py")
    if as_file.is_file():
        return as_file
    as_package = package_root.joinpath(*parts, "__init__.py")
    return as_package if as_package.is_file() else None


def module_closure(
    script: Path, package_root: Path, extra_modules: tuple[str, ...] = ()
) -> list[Path]:
    """Every gex_core source file `script` imports, directly or through other modules.

    package_root: the folder that holds the `gex_core` package. Parent packages'
    `__init__.py` count as imported, as Python runs them. extra_modules: dotted names
    the script imports dynamically (a registry's compute function). The script itself
    is not part of the closure (Snakemake reruns a job when its script changes).
    """
    seen: set[Path] = set()
    looked_up: set[str] = set()  # dotted names already resolved (stat calls are slow)
    pending: list[Path | str] = [script, *extra_modules]
    while pending:
        item = pending.pop()
        names = {item} if isinstance(item, str) else _parsed(item, package_root).imports
        for name in names:
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):
                module = ".".join(parts[:depth])
                if module in looked_up:
                    continue
                looked_up.add(module)
                path = _module_file(package_root, module)
                if path is not None and path not in seen:
                    seen.add(path)
                    pending.append(path)
    return sorted(seen)


def source_fingerprint(
    script: str | Path, package_root: str | Path, extra_modules: tuple[str, ...] = ()
) -> str:
    """sha256 (16 hex digits) over the relative paths and normalised code (AST without
    docstrings, see module docstring) of the closure."""
    root = Path(package_root)
    digest = hashlib.sha256()
    for path in module_closure(Path(script), root, extra_modules):
        relative = path.relative_to(root).as_posix().encode()
        # The path's length keeps path/code boundaries unambiguous; each module's
        # normalised code enters by its own (fixed-length) sha256.
        digest.update(len(relative).to_bytes(8, "big"))
        digest.update(relative)
        digest.update(_parsed(path, root).code_digest)
    _parse_cache(root).save()
    return digest.hexdigest()[:16]


# Content digests of user data, remembered by what the file system says of the files
# (path, size, mtime, inode): a large file is hashed once, and a file replaced by
# another (new inode, size or mtime) is hashed again whatever its mtime says.
DIGEST_CACHE = Path(".snakemake") / "gex-file-digests.json"
DIGEST_CACHE_ENTRIES = 256
# this process's, so a path builder called once per path is cheap
_DIGESTS: dict[str, str] = {}


def remembered_digest(key: str, compute, cache: Path | None) -> str:
    """The digest remembered under key (in this process, then in the JSON file
    `cache`; None: no file), else compute() remembered in both. A cache that cannot
    be read or written is ignored (it is only a cache)."""
    if key in _DIGESTS:
        return _DIGESTS[key]
    known = {} if cache is None else _read_cache_file(Path(cache))
    if isinstance(known.get(key), str):
        _DIGESTS[key] = known[key]
        return known[key]
    digest = _DIGESTS[key] = compute()
    if cache is not None:
        _write_cache_file(Path(cache), {**known, key: digest}, DIGEST_CACHE_ENTRIES)
    return digest


def _file_state(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}"


def content_digest(path: str | Path, cache: Path | None = DIGEST_CACHE) -> str:
    """sha256 (hex) of the file's bytes, remembered (`remembered_digest`) under its
    resolved path, size, mtime and inode."""
    from gex_core.workflow.provenance import file_digest

    path = Path(path)
    key = f"{path.resolve()}|{_file_state(path)}"
    return remembered_digest(key, lambda: file_digest(path), cache)


def folder_digest(
    root: str | Path, files: list[Path], cache: Path | None = DIGEST_CACHE
) -> str:
    """sha256 (hex) over the files' paths relative to root and their contents'
    sha256, in path order: an image folder's identity. Remembered under the folder
    and a digest of its listing (each file's path, size, mtime, inode), so an
    unchanged folder is not read again and a touched but unchanged file changes
    nothing."""
    from gex_core.workflow.provenance import file_digest

    root = Path(root).resolve()
    ordered = sorted(Path(f).resolve() for f in files)
    listing = hashlib.sha256()
    for file in ordered:
        listing.update(f"{file.relative_to(root)}|{_file_state(file)}\n".encode())

    def content() -> str:
        digest = hashlib.sha256()
        for file in ordered:
            digest.update(f"{file.relative_to(root)}\0{file_digest(file)}\n".encode())
        return digest.hexdigest()

    return remembered_digest(f"folder:{root}|{listing.hexdigest()}", content, cache)
