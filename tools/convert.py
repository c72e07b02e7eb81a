#!/usr/bin/env python
"""Convert an official checkpoint into a zoo safetensors file.

The code is ``zoo.cli.convert``; ``--help`` lists the options."""

from zoo.cli.convert import cli

if __name__ == '__main__':
    cli()
