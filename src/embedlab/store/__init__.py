"""Saved directories: crash-safe writes, versioned root documents, what a directory owns,
reading without leaving it, signatures, estimators as JSON + arrays, resumable work
folders."""
