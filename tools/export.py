#!/usr/bin/env python
"""Export a timm / zoo model as ONNX or a torch.export ExportedProgram and check it against PyTorch.

The code is ``zoo.cli.export``; ``--help`` lists the options."""

from zoo.cli.export import cli

if __name__ == '__main__':
    cli()
