"""The pieces behind ``tools/analysis/benchmark.py`` (``zoo.cli.benchmark``), one of each for every family.

* :mod:`zoo.benchmark.timing`: wall-clock and process-CPU timing, interleaved (round-robin) rounds, medians.
* :mod:`zoo.benchmark.memory`: peak resident set size of this process, and measuring it in a fresh one.
* :mod:`zoo.benchmark.macs`: the MAC counter (total, conv / linear, attention products incl. CPU SDPA).
* :mod:`zoo.benchmark.report`: ``<out>.csv`` and ``<out>.png`` (bar or line panels side by side).
* :mod:`zoo.benchmark.scan`: the ``scan`` suite (selective-scan kernels, MHS-VM VM-UNet throughput).
* :mod:`zoo.benchmark.wsi`: the ``wsi`` suite (whole-slide feature extraction against a bare forward).
"""
