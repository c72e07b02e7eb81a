#!/usr/bin/env python
"""Evaluate a trained model with a config's test dataloader and evaluator.

The code is ``zoo.cli.test``; ``--help`` lists the options."""

from zoo.cli.test import cli

if __name__ == '__main__':
    cli()
