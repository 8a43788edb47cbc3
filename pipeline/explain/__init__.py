"""Why the head decides as it does: attention taps, per-dimension relevance maps (Chefer et al.),
each dimension's contribution to the logit known without them (:mod:`pipeline.explain.contributions`,
torch-free), their deletion check, visual concepts of a cell, their drawings, and computing them once per run
(:mod:`pipeline.explain.cache`; what each depends on and where it is kept, torch-free:
:mod:`pipeline.explain.results`).
"""
