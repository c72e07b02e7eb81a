#!/usr/bin/env python
"""Write a small synthetic data set for the smoke configs in configs/smoke/ (no download).

The code is ``zoo.cli.make_fixtures``; ``--help`` lists the options."""

from zoo.cli.make_fixtures import cli

if __name__ == '__main__':
    cli()
