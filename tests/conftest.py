import os

# Tests run on the CPU, with float64 available where a ground-truth check needs it.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
