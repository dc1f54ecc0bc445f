import atexit
import os
import shutil
import tempfile

# Tests run on the CPU, with float64 available where a ground-truth check needs it.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# One persistent JAX compilation cache for the whole session: every workflow run the
# tests start (their jobs inherit the environment) reuses the steps an earlier run
# compiled, as the jobs of one real run do. A cached executable is the compiled one
# (tests/test_workflow.py's bitwise rerun reads what the first run compiled). A test
# that needs its own cache sets the variable itself.
_SESSION_CACHE = tempfile.mkdtemp(prefix="gex-tests-jax-cache-")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _SESSION_CACHE)
atexit.register(shutil.rmtree, _SESSION_CACHE, ignore_errors=True)


# The files that run real workflows, longest first: pytest-xdist hands whole files to
# workers in collection order, so the longest start first and the short files fill in
# around them (a long file handed out last would run alone at the end).
LONGEST_FIRST = (
    "test_workflow.py",
    "test_slurm.py",
    "test_bad_input_workflow.py",
    "test_presets.py",
    "test_benchmarks.py",
    "test_label_issues.py",
    "test_devices.py",
    "test_kill_resume.py",
)


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        name = item.path.name
        return (
            LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
        )

    items.sort(key=rank)  # stable: each file's tests keep their order
