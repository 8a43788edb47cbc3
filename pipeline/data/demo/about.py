"""What the offline demo set is, in words an analyst reads beside its run (no building here)."""
from __future__ import annotations

from pathlib import Path

MARKER = ".demo-build.json"  # written by the builder at the set's root (pipeline.data.demo.build)

DESCRIPTION = ("Demo data: real = random square crops of real photographs (from Python and Debian "
               "packages); fake = other crops of the same photographs, shrunk to 64 px and regenerated "
               "4x by one of three GAN super-resolution networks. Both classes are 256x256 PNG written "
               "the same way, split by source photo. A same-source real and fake show different crops.")


def is_demo_set(root: str | Path | None) -> bool:
    """Whether the data folder ``root`` was built by the demo builder."""
    return bool(root) and (Path(root) / MARKER).is_file()
