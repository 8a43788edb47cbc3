"""Is the detector's answer about the images or about the files? The shortcut check on file facts,
duplicates and leakage, the bias probe under re-encoding, the re-encoding that equalises a flagged
file fact (``confound``), and the validity report that joins them (and compares two runs).
"""
