"""The app's derived files for a run (grids, sprites, viewer layers) and the Flask routes that
serve them.
"""
