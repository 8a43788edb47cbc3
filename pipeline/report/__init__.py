"""What the analyst writes down: notes on cells and images, and the findings sheet made of them.
"""
