#!/usr/bin/env python
"""Train any zoo task (classification, detection, segmentation, WSI MIL, distillation) from a config.

The code is ``zoo.cli.train``; ``--help`` lists the options."""

from zoo.cli.train import cli

if __name__ == '__main__':
    cli()
