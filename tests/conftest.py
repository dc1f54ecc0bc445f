import atexit
import os
import shutil
import tempfile

# Tests run on the CPU, with float64 available where a ground-truth check needs it.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# One persistent JAX compilation cache for the whole session: every workflow run the
# tests start (their jobs inherit the environment) reuses the steps an earlier run
# compiled, as the jobs of one real run do. A cached executable is the compiled one
# (tests/test_workflow.py's bitwise test runs against a fresh cache). A test that
# needs its own cache sets the variable itself.
_SESSION_CACHE = tempfile.mkdtemp(prefix="gex-tests-jax-cache-")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _SESSION_CACHE)
atexit.register(shutil.rmtree, _SESSION_CACHE, ignore_errors=True)
