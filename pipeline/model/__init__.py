"""The detector: image encoders (CLIP, the offline stand-in), embedding and its shards, the
vision-only projection (its training, words and background photos), the 16-d head, its metrics, and
a run's models loaded together (:mod:`pipeline.model.run_models`).
"""
