"""torch recipes (prune, int8 via torchao), export to the served .pt2 file, and model statistics."""
