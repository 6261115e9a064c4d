"""The hybrid (FiBHA) mode: a SESL prefix and the SEML core under one budget.

:mod:`compiler.hybrid.split` is SplitCNN (where to cut, how to share the DSPs);
:mod:`compiler.hybrid.compile` writes and simulates a hybrid compile output.
"""
