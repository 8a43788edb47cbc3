"""What the app knows: the shared context, loaded runs, the image filter, URL state, image sets and
every component id.
"""
