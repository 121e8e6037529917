"""Model: loading, the architecture table, the layer map and the staged forward pass."""
