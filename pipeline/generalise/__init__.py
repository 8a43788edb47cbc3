"""How a run's detector fares beyond its own data: scoring new images (apply), the cross-generator
matrix, and the stacked heads that train it.
"""
