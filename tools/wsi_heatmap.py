#!/usr/bin/env python
"""Render attention heatmaps of a trained MIL model: each branch's and the bag's attention over the

The code is ``zoo.cli.wsi_heatmap``; ``--help`` lists the options."""

from zoo.cli.wsi_heatmap import cli

if __name__ == '__main__':
    cli()
