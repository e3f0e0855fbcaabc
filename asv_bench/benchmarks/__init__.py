"""asv benchmarks of langstream, one module per component (see README, "Performance")."""
