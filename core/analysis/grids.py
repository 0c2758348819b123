"""The default grids automatic allocation tries per layer, and its solvers (plain constants: the allocate
step's defaults, imported where the method modules load, so this module imports nothing)."""

SPARSITIES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97)
BITS = (8, 6, 5, 4, 3, 2)
SOLVERS = ("knapsack", "greedy")
