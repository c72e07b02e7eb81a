#!/usr/bin/env python
"""Class-token attention rollout of a ViT (timm ViT / DeiT, DCAL with its GLCA queries, Agent-DeiT) as one
PNG per image.

The code is ``zoo.cli.attention_map``; ``--help`` lists the options."""

from zoo.cli.attention_map import cli

if __name__ == '__main__':
    cli()
