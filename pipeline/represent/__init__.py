"""How a run is shown: the representation view's cells (clustering, 2-D placement), a cell's similarity
grid, and the run's images as a browser shows them (thumbnails, originals).
"""
