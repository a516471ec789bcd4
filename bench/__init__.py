"""Benchmarks of orthofit: time per stage and peak memory on scans of several sizes."""
