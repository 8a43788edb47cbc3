"""Everything the scan can decide fails at the scan stage, before the encoder is loaded."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline import runner
from pipeline.config import REPO_ROOT, load_config


def _folder(root, n_real: int, n_fake: int):
    rng = np.random.default_rng(0)
    for label, n in (("0_real", n_real), ("1_fake", n_fake)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    (root / "1_fake" / "broken.png").write_bytes(b"not a png")
    return root


@pytest.mark.parametrize("n_real, n_fake, words", [(12, 0, "has only real images (12) (1 file(s) could "
                                                           "not be used); both classes are needed"),
                                                   (4, 3, "has only 7 usable images")])
def test_scan_decides_before_the_encoder_is_loaded(tmp_path, monkeypatch, n_real, n_fake, words):
    data = _folder(tmp_path / "data", n_real, n_fake)
    cfg = load_config(REPO_ROOT / "configs" / "test.yaml",
                      [f"data.root={data}", f"runs_dir={tmp_path / 'runs'}", f"cache_dir={tmp_path / 'c'}"])
    monkeypatch.setattr(runner, "shared_encoder", lambda *a, **k: pytest.fail("the encoder was loaded"))
    stages = []
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        runner.run_pipeline(cfg, progress=lambda stage, done, total: stages.append(stage))
    assert set(stages) == {"scan"}
