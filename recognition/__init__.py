"""Faces in an image to quality-checked, L2-normalised embeddings."""
