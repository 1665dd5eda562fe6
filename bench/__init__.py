"""warpbench: a benchmark suite for deep image spatial transformation."""

import pkgutil

# The repository keeps tasks/ and baselines/ at its top level and installs them as bench.tasks and
# bench.baselines.  When `python run_bench.py` or `python -m pytest` runs from a checkout next to a
# regular (non-editable) install, the checkout's bench/ comes first on sys.path; extending the
# package path lets bench.tasks and bench.baselines still resolve to the installed copies.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = "0.1.0"
