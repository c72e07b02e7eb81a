#!/usr/bin/env python
"""Extract patch features of whole-slide images with any timm / zoo model (num_classes=0).

The code is ``zoo.cli.wsi_extract``; ``--help`` lists the options."""

from zoo.cli.wsi_extract import cli

if __name__ == '__main__':
    cli()
