"""Per-stage source fingerprints: a hash of the gex_core modules a job script imports.

Snakemake reruns a job when its script changes but not when a library module it imports
changes. Passing this fingerprint through `params:` makes an edit of gex_core mark stale
exactly the stages whose scripts (transitively) import the edited module.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = "gex_core"


def _imported_modules(source: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {m for m in modules if m == PACKAGE or m.startswith(PACKAGE + ".")}


@functools.cache
def _file_imports(path: Path, mtime_ns: int, size: int) -> frozenset[str]:
    """gex_core modules one file imports, parsed once per version of the file: the
    Snakefile fingerprints every job script, and the scripts share most modules (and
    every cluster job parses the workflow again)."""
    return frozenset(_imported_modules(path.read_text()))


def _imports_of(path: Path) -> frozenset[str]:
    stat = path.stat()
    return _file_imports(path, stat.st_mtime_ns, stat.st_size)


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
    the script imports dynamically (a registry's compute function).
    """
    seen: set[Path] = set()
    pending: list[Path | str] = [script, *extra_modules]
    while pending:
        item = pending.pop()
        names = {item} if isinstance(item, str) else _imports_of(item)
        for name in names:
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):
                path = _module_file(package_root, ".".join(parts[:depth]))
                if path is not None and path not in seen:
                    seen.add(path)
                    pending.append(path)
    return sorted(seen)


def source_fingerprint(
    script: str | Path, package_root: str | Path, extra_modules: tuple[str, ...] = ()
) -> str:
    """sha256 (16 hex digits) over the relative paths and contents of the closure."""
    root = Path(package_root)
    digest = hashlib.sha256()
    for path in module_closure(Path(script), root, extra_modules):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
