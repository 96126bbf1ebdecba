#!/usr/bin/env python
"""Clinical inference: `python inference.py --checkpoint checkpoints/best_model.pt --age 35 --intensity 80
--rate 30 --fmp 0.8 --confidence` (also --input_file, --generate N, --series PATH…).

``from inference import ABRInference`` works too, as in the seed document.
"""

import sys

from abrflow.cli import main


def __getattr__(name):  # `from inference import ABRInference` without importing torch for the CLI's --help
    if name == "ABRInference":
        from abrflow.inference.predictor import ABRInference

        return ABRInference
    raise AttributeError(f"module 'inference' has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(main(["infer", *sys.argv[1:]]))
