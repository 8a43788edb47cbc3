"""``python -m pipeline ...``: argument parsing and the text each command prints.
"""
