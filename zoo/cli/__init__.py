"""The code behind ``tools/*.py`` and the ``zoo-*`` console commands (one module per tool).

``tools/<name>.py`` and ``tools/analysis/<name>.py`` only call ``zoo.cli.<name>.cli()``; ``common`` holds what
the tools share (one-line user errors, the mmengine Runner with a short console log).
"""
