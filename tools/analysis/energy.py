#!/usr/bin/env python
"""Firing rates, synaptic operations, energy and model size of spiking zoo models

The code is ``zoo.cli.energy``; ``--help`` lists the options."""

from zoo.cli.energy import cli

if __name__ == '__main__':
    cli()
