"""Evaluation: quality measurements of a package on this adapter."""
