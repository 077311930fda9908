"""Clips in, normalised (T, 3, H, W) float tensors and labels out."""
