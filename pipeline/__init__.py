"""FaXplainer pipeline: image folder -> embeddings -> vision-only features -> 16-d head -> cells.

Never imports Dash; usable from the CLI (`python -m pipeline`) and notebooks."""
__version__ = "0.1.0"
