#!/usr/bin/env python
"""Evaluate a trained checkpoint: `python evaluate.py --checkpoint checkpoints/NAME/best_model.pt`."""

import sys

from abrflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
