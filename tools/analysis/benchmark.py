#!/usr/bin/env python
"""Throughput, latency, peak memory, parameters and GMACs for a list of models (zoo and timm).

The code is ``zoo.cli.benchmark``; ``--help`` lists the options."""

from zoo.cli.benchmark import cli

if __name__ == '__main__':
    cli()
