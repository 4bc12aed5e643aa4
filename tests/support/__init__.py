"""Helpers the tests and the benchmarks share (start hubs, drive kernels, register models, ...).

Imported as ``tests.support.<module>``: pytest puts the repository root on ``sys.path`` (``tests``
is a package), and the benchmarks insert it themselves.
"""
