"""Offline demo data set: real photo crops vs GAN super-resolved crops of the same photos.

``build_demo_dataset`` makes it from photos that ship with Python packages (plus Debian wallpaper
packages and the user's own photos when available) and three GAN super-resolution networks run on
the CPU with ncnn; see :mod:`.build` for what keeps it free of shortcuts.
"""
from pipeline.data.demo.build import build_demo_dataset
from pipeline.data.demo.generators import GENERATOR_NAMES

__all__ = ["build_demo_dataset", "GENERATOR_NAMES"]
