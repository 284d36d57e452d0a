"""Benchmarks and accuracy checks on labelled data: numbers printed and written to docs/."""
