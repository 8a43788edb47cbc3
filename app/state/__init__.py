"""What the app knows: the shared context, loaded runs, the image filter, URL state, image sets,
who the user is and what their role allows, and every component id.
"""
