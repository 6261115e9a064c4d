"""Graph passes: each a named function ``pass_(graph, ctx) -> graph`` from IR to IR,
listed in order in :mod:`compiler.pipeline`.

Lowering after import (the frontend's passes):

- :mod:`compiler.passes.cleanup` -- ``remove_identities``, ``finish_lowering``;
- :mod:`compiler.passes.fuse` -- ``absorb_flattens``, ``fuse_activations``,
  ``lower_activations``;
- :mod:`compiler.passes.fold` -- ``fold_scales`` (BatchNormalization into convs),
  ``lower_scales``, ``fold_pads``;
- :mod:`compiler.passes.rewrite` -- the graph surgery they share.

After them come pruning and quantization (:mod:`compiler.passes.prune`,
:mod:`compiler.passes.quantize`). Before code generation,
:mod:`compiler.passes.fuse_pool` plans which max pools run fused in the layer before them.
"""
