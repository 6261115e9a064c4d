"""Graph passes: each a named function from IR to IR, listed in :mod:`compiler.pipeline`."""
