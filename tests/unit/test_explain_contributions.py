"""The maps' contributions without a relevance pass (``pipeline.explain.contributions``): the head's
output layer read from ``head.pt`` without torch, and the attention matrix's column order."""
from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest
import torch

from pipeline.explain.contributions import column_order, contributions, read_classifier_weight, read_torch_state
from pipeline.explain.relevance import relevance_maps
from pipeline.model.head import DistilledHead, HeadModule
from pipeline.store.run_store import HEAD, ArtifactError
from tests.unit.test_relevance import toy_encoder, toy_image

# |w_k| = |k - 7.5|: the ends weigh most, d0 and d15 tie (stable: d0 first), then d1 and d14, ...
WEIGHTS = np.arange(16) - 7.5
KNOWN_ORDER = [0, 15, 1, 14, 2, 13, 3, 12, 4, 11, 5, 10, 6, 9, 7, 8]


def toy_head(classifier: np.ndarray) -> HeadModule:
    """z_k = feature 0 for every k (so z_k is the same for all k), output layer ``classifier``."""
    head = HeadModule(8, len(classifier))
    with torch.no_grad():
        head.to16.weight.zero_()
        head.to16.bias.zero_()
        head.to16.weight[:, 0] = 1.0
        head.classifier.weight.copy_(torch.from_numpy(classifier).float().unsqueeze(0))
        head.classifier.bias.fill_(0.25)
    return head.eval()


def save_head(module: HeadModule, path) -> None:
    """As the runner writes ``head.pt`` (``DistilledHead.state()`` through ``torch.save``)."""
    head = DistilledHead(dim=module.to16.out_features)
    head.module_ = module
    torch.save(head.state(), path)


def test_torch_free_reader_equals_torch_load(tmp_path):
    torch.manual_seed(0)
    module = HeadModule(32, 16)
    save_head(module, tmp_path / "head.pt")
    ours = read_torch_state(tmp_path / "head.pt")
    theirs = torch.load(tmp_path / "head.pt", weights_only=True)
    assert (ours["in_dim"], ours["dim"]) == (32, 16)
    assert list(ours["state_dict"]) == list(theirs["state_dict"])
    for name, tensor in theirs["state_dict"].items():
        assert ours["state_dict"][name].shape == tuple(tensor.shape)
        np.testing.assert_array_equal(ours["state_dict"][name], tensor.numpy())


def test_order_and_values_equal_the_maps_own_contributions(make_fake_run):
    run = make_fake_run(n_images=8, n_cells=2)
    head = toy_head(WEIGHTS)
    save_head(head, run / HEAD)
    w = read_classifier_weight(run)
    np.testing.assert_allclose(w, WEIGHTS, atol=1e-6)
    # two toy images: z_k = their mean intensity share (> 0), so |c_k| ranks as |w_k|
    batch = torch.stack([toy_image(np.full((4, 4), 0.8)), toy_image(np.linspace(0.1, 0.9, 16).reshape(4, 4))])
    maps = relevance_maps(toy_encoder(), torch.nn.Identity(), head, batch)
    assert (maps.z > 0).all()
    ours = contributions(maps.z, w)
    np.testing.assert_allclose(ours, maps.contributions, rtol=1e-6, atol=1e-7)
    assert column_order(ours) == column_order(maps.contributions) == KNOWN_ORDER


def test_column_order_by_mean_absolute_contribution():
    # d1 pushes one way in one image and the other way in the other: |.| counts both
    c = np.array([[0.1, 2.0, -0.5], [0.1, -2.0, 0.5]])
    assert column_order(c) == [1, 2, 0]
    assert column_order(np.zeros((1, 3))) == [0, 1, 2] and column_order(np.zeros((0, 0))) == []
    with pytest.raises(ValueError, match="3 dimensions but the head's output layer has 2"):
        contributions(np.zeros((1, 3)), np.ones(2))


def test_a_missing_damaged_or_foreign_head_is_a_clear_error(make_fake_run):
    run = make_fake_run(n_images=8, n_cells=2)
    with pytest.raises(ArtifactError, match="head.pt is missing"):
        read_classifier_weight(run)
    (run / HEAD).write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="head.pt holds no readable classifier.weight"):
        read_classifier_weight(run)
    # a pickle naming anything but a state dict's globals is refused, never run
    with zipfile.ZipFile(run / HEAD, "w") as z:
        z.writestr("head/data.pkl", pickle.dumps({"state_dict": zipfile.ZipFile}))
    with pytest.raises(ArtifactError, match="zipfile.ZipFile is not part of a state dict"):
        read_classifier_weight(run)
