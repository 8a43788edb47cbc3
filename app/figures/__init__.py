"""Pure figure builders (plotly), one module per view family; no callbacks here.
"""
