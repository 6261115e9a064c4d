"""Code generation: program encoding, weight image, memory map, listing and report."""
