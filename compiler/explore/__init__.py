"""Design-space exploration: search space, objectives, Pareto fronts, exclusion rules.

``convforge explore`` (:func:`compiler.explore.run.explore`) searches accelerator
modes, engine parallelism and buffers, kernel sets, weight schemes, word sizes and
per-layer pruning with Optuna's NSGA-II, evaluating designs on Dask distributed.
"""
