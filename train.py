#!/usr/bin/env python
"""Train the ABR diffusion model: `python train.py --config configs/config.yaml --experiment NAME`."""

import sys

from abrflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
