#!/usr/bin/env python
"""Generate the README model table from the zoo's registry.

The code is ``zoo.cli.model_table``; ``--help`` lists the options."""

from zoo.cli.model_table import cli

if __name__ == '__main__':
    cli()
