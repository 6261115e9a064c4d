"""Hardware of the hybrid (FiBHA) mode: the SESL prefix's hand-off to the SEML core."""
