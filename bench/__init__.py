"""devspace's benchmarks: each measurement side by side with the standard tool it competes with.

Run `bench/run` (or `python -m bench`); see BENCHMARKS.md for what each row measures.
"""
