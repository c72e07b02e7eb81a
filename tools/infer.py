#!/usr/bin/env python
"""Run a trained detection or segmentation config on an image, or on every image of a folder, and

The code is ``zoo.cli.infer``; ``--help`` lists the options."""

from zoo.cli.infer import cli

if __name__ == '__main__':
    cli()
