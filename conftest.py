"""Test-session settings shared by every test."""

import os

# Tests run two xdist workers on two cores; multi-threaded BLAS inside each worker
# oversubscribes the machine and makes small matrix products many times slower.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
