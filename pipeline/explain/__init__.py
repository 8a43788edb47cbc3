"""Why the head decides as it does: attention taps, per-dimension relevance maps (Chefer et al.),
their deletion check, visual concepts of a cell, their drawings, and the run's cache of them.
"""
