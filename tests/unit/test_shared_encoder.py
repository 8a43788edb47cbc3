"""One encoder per process and configuration (workers serve many runs; issue 6)."""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from types import SimpleNamespace

import torch

from pipeline.config import EncoderConfig
from pipeline.model.encoders import shared_encoder
import pipeline.model.encoders as encoders


def test_same_configuration_gives_the_same_encoder(tmp_path):
    cfg = EncoderConfig(name="tiny", device="cpu")
    first = shared_encoder(cfg, tmp_path)
    assert shared_encoder(cfg, tmp_path) is first
    assert shared_encoder(dataclasses.replace(cfg, precision="bf16"), tmp_path) is not first


def test_loaded_once_across_threads(tmp_path, monkeypatch):
    calls = []
    real = encoders.load_encoder

    def counting(cfg, cache_dir, log=None):
        calls.append(cfg)
        time.sleep(0.2)  # a slow load: the other threads must wait for it, not load again
        return real(cfg, cache_dir, log=log)

    monkeypatch.setattr(encoders, "load_encoder", counting)
    cfg = EncoderConfig(name="tiny", device="cpu", batch_size=7)  # a key no other test used
    out = []
    threads = [threading.Thread(target=lambda: out.append(shared_encoder(cfg, tmp_path / "c")))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(e) for e in out}) == 1


def test_replaced_checkpoint_file_is_loaded_anew(tmp_path, monkeypatch):
    loaded = []
    def fake_load(cfg, cache_dir, log=None):
        loaded.append(cfg.checkpoint)
        return SimpleNamespace(lock=threading.RLock(), info=SimpleNamespace(fallback_reason=None))

    monkeypatch.setattr(encoders, "load_encoder", fake_load)
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"one")
    cfg = EncoderConfig(name="open_clip", checkpoint=str(ckpt), device="cpu")
    a = shared_encoder(cfg, tmp_path)
    assert shared_encoder(cfg, tmp_path) is a
    ckpt.write_bytes(b"other weights")
    os.utime(ckpt, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert shared_encoder(cfg, tmp_path) is not a and len(loaded) == 2


def test_embed_waits_while_another_thread_holds_the_lock(tmp_path):
    enc = shared_encoder(EncoderConfig(name="tiny", device="cpu"), tmp_path)
    x = torch.zeros(1, 3, enc.info.image_size, enc.info.image_size)
    finished = threading.Event()
    with enc.lock:  # e.g. attention taps installed by an explanation
        t = threading.Thread(target=lambda: (enc.embed(x), finished.set()))
        t.start()
        assert not finished.wait(0.3)
    t.join(10)
    assert finished.is_set()
