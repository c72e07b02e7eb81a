#!/usr/bin/env python
"""Tile whole-slide images: tissue mask, patch grid, coordinates (HDF5) and a check thumbnail (PNG).

The code is ``zoo.cli.wsi_tile``; ``--help`` lists the options."""

from zoo.cli.wsi_tile import cli

if __name__ == '__main__':
    cli()
