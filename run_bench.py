#!/usr/bin/env python
"""warpbench entry point: ``python run_bench.py --profile quick`` (see README.md)."""

import sys

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
