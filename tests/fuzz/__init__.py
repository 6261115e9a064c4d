"""Seeded fuzzing harnesses: random graphs through the whole compiler, corrupted programs
on the ISS and the RTL. ``tests/test_fuzz_*.py`` run small counts; ``benchmarks/fuzz.py``
runs thousands."""
