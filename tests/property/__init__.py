"""Property-based tests: the codec, routing, names and the memory layer against models."""
