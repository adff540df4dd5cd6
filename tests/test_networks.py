"""Networks, augmentation and inference: shapes, pretrained weights, views, repeatability."""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from torchvision.models._api import WeightsEnum

from clnm_kedro.networks import (
    BACKBONES,
    FUSIONS,
    augment_batch,
    build_network,
    extract_features,
    features_and_probabilities,
    features_table,
    predict_probabilities,
    predictions_table,
)
from clnm_kedro.networks.architecture import greyscale_conv
from clnm_kedro.networks.cpu_numerics import thread_independent_numerics
from float_compare import assert_same_numbers

SMALL = {"compact_channels": [8, 16, 32], "hidden_dim": 16}


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from threads; one avoids spin-waiting on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _network(**network: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network({"network": network})


def _crops(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 2, size, size), dtype=np.uint8)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_gives_one_logit_and_features_per_patient(backbone: str) -> None:
    size = 64 if backbone in {"resnet50", "efficientnet_b0"} else 32
    model = _network(backbone=backbone, hidden_dim=24, shared_branches=True).eval()
    x = torch.rand(2, 2, size, size)
    with torch.no_grad():
        assert model(x).shape == (2,)
        assert model.features(x).shape == (2, 24)
    assert model.views == (0, 1)


@pytest.mark.parametrize("kind, views", [("longitudinal", (0,)), ("transverse", (1,))])
def test_single_view_network_reads_one_view(kind: str, views: tuple[int, ...]) -> None:
    model = _network(kind=kind, **SMALL).eval()
    assert model.views == views
    with torch.no_grad():
        assert model(torch.rand(3, 1, 32, 32)).shape == (3,)
    with pytest.raises(ValueError, match=r"1 view\(s\)"):
        model(torch.rand(3, 2, 32, 32))


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("shared", [False, True])
def test_every_fusion_gives_logits_and_features(fusion: str, shared: bool) -> None:
    model = _network(fusion=fusion, shared_branches=shared, **SMALL)
    x = torch.rand(4, 2, 32, 32)
    logits = model(x)  # training mode: gradients flow through fusion and both branches
    logits.sum().backward()
    assert logits.shape == (4,)
    assert model.features(x).shape == (4, 16)
    assert all(p.grad is not None for p in model.branches.parameters())
    if fusion != "concat":
        weights = model.fusion.view_weights(model.view_embeddings(x))
        assert weights.shape == (4, 2)
        if fusion == "attention":
            torch.testing.assert_close(weights.sum(dim=1), torch.ones(4))


def test_shared_branches_hold_one_backbone_instead_of_two() -> None:
    separate = _network(shared_branches=False, **SMALL)
    shared = _network(shared_branches=True, **SMALL)
    one_backbone = sum(p.numel() for p in shared.branches.parameters())
    assert len(separate.branches) == 2
    assert len(shared.branches) == 1
    assert sum(p.numel() for p in separate.branches.parameters()) == 2 * one_backbone
    total = sum(p.numel() for p in separate.parameters())
    assert total - sum(p.numel() for p in shared.parameters()) == one_backbone


def test_resnet18_at_paper_size_trains_one_step() -> None:
    model = _network(backbone="resnet18", shared_branches=True)
    x = torch.rand(2, 2, 224, 224)
    features = model.features(x)
    logits = model.head(features).squeeze(-1)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([0.0, 1]))
    loss.backward()
    assert features.shape == (2, 64)
    assert logits.shape == (2,)
    assert model.branches[0].conv1.weight.grad.shape == (64, 1, 7, 7)


def test_standardisation_makes_output_blind_to_gain_and_offset() -> None:
    model = _network(**SMALL).eval()
    x = torch.rand(3, 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(0.4 * x + 0.3), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "backbone, first_conv",
    [("resnet18", "conv1"), ("mobilenet_v3_small", "features.0.0")],
)
def test_greyscale_first_conv_sums_pretrained_rgb_kernels(
    tmp_path, backbone: str, first_conv: str
) -> None:
    torch.manual_seed(1)
    reference = getattr(torchvision.models, backbone)(weights=None).state_dict()
    path = tmp_path / f"{backbone}.pth"
    torch.save(reference, path)
    model = _network(backbone=backbone, pretrained=str(path))
    for branch in model.branches:
        grey = branch.get_submodule(first_conv).weight
        torch.testing.assert_close(grey, reference[f"{first_conv}.weight"].sum(1, keepdim=True))
        other = next(k for k in reference if k.endswith("weight") and not k.startswith(first_conv))
        torch.testing.assert_close(branch.state_dict()[other], reference[other])


def test_greyscale_conv_answers_a_grey_image_like_the_rgb_conv() -> None:
    torch.manual_seed(2)
    rgb = torch.nn.Conv2d(3, 8, 3, padding=1)
    grey_image = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(
        greyscale_conv(rgb)(grey_image), rgb(grey_image.expand(-1, 3, -1, -1))
    )


def test_pretrained_errors_are_clear(tmp_path, monkeypatch) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _network(backbone="resnet18", pretrained=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="available"):
        _network(backbone="resnet18", pretrained="NO_SUCH_WEIGHTS")
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, wrong)
    with pytest.raises(ValueError, match="does not fit the resnet18"):
        _network(backbone="resnet18", pretrained=str(wrong))
    with pytest.raises(ValueError, match="compact backbone must be a state-dict file"):
        _network(backbone="compact", pretrained="IMAGENET1K_V1")

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match="network access needed"):
        _network(backbone="resnet18", pretrained="IMAGENET1K_V1")


@pytest.mark.parametrize(
    "network, message",
    [
        ({"backbone": "vgg16"}, "network.backbone='vgg16'"),
        ({"fusion": "sum"}, "network.fusion='sum'"),
        ({"kind": "sagittal"}, "network.kind='sagittal'"),
        ({"backbon": "compact"}, "Unknown parameter"),
        ({"dropout": 1.5}, "network.dropout"),
    ],
)
def test_bad_network_config_is_rejected(network: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build_network({"network": network})


def test_bad_augment_config_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"augment.scale"):
        augment_batch(torch.rand(1, 2, 8, 8), {"augment": {"scale": [1.1, 0.9]}}, torch.Generator())
    with pytest.raises(ValueError, match="Unknown parameter"):
        augment_batch(
            torch.rand(1, 2, 8, 8), {"augment": {"vertical_flip": True}}, torch.Generator()
        )


def _gradients(n: int, size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    ramp = torch.linspace(0.05, 0.95, size)
    vertical = ramp.view(1, 1, size, 1).expand(n, 2, size, size).clone()  # dark at the top
    horizontal = ramp.view(1, 1, 1, size).expand(n, 2, size, size).clone()  # dark at the left
    return vertical, horizontal


def _dark_first(images: torch.Tensor, dim: int) -> torch.Tensor:
    quarter = images.shape[dim] // 4
    first = images.narrow(dim, 0, quarter).mean(dim=(-2, -1))
    last = images.narrow(dim, images.shape[dim] - quarter, quarter).mean(dim=(-2, -1))
    return first < last


def test_augmentation_never_flips_depth_but_flips_left_right() -> None:
    vertical, horizontal = _gradients(64)
    strong = {
        "augment": {
            "horizontal_flip": True,
            "speckle": 0.3,
            "blur_probability": 1.0,
            "resample_probability": 1.0,
        }
    }
    out = augment_batch(vertical, strong, torch.Generator().manual_seed(0))
    assert out.shape == vertical.shape
    assert _dark_first(out, dim=-2).all()  # every image keeps its top dark
    flipped = ~_dark_first(
        augment_batch(horizontal, strong, torch.Generator().manual_seed(0)), dim=-1
    )
    assert 0.2 < flipped.float().mean() < 0.8  # left-right flips happen, about half the time
    assert (flipped[:, 0] == flipped[:, 1]).float().mean() < 1  # each view on its own
    no_flip = {"augment": {"horizontal_flip": False}}
    kept = augment_batch(horizontal, no_flip, torch.Generator().manual_seed(0))
    assert _dark_first(kept, dim=-1).all()


def test_augmentation_is_seeded_bounded_and_can_be_switched_off() -> None:
    images = torch.rand(8, 2, 32, 32)
    first = augment_batch(images, {}, torch.Generator().manual_seed(3))
    again = augment_batch(images, {}, torch.Generator().manual_seed(3))
    other = augment_batch(images, {}, torch.Generator().manual_seed(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first, images)
    assert first.min() >= 0 and first.max() <= 1
    assert augment_batch(images, {"augment": False}, torch.Generator()) is images
    assert augment_batch(images, {"augment": {"enabled": False}}, torch.Generator()) is images


def test_features_and_probabilities_follow_patient_rows() -> None:
    crops = _crops(9)
    model = _network(**SMALL)
    permutation = np.random.default_rng(1).permutation(9)
    features = extract_features(model, crops, batch_size=4)
    permuted = extract_features(model, crops[permutation], batch_size=4)
    assert features.shape == (9, 16)
    np.testing.assert_allclose(permuted, features[permutation], rtol=1e-5, atol=1e-6)
    assert model.training  # mode restored

    probabilities = predict_probabilities(model, crops, batch_size=4)
    with torch.no_grad():
        expected = torch.sigmoid(model.eval()(torch.from_numpy(crops).float() / 255)).numpy()
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-6)

    ids = [f"P{i}" for i in range(9)]
    table = features_table(permuted, [ids[i] for i in permutation])
    assert list(table.columns[:3]) == ["patient_id", "dl_000", "dl_001"]
    by_patient = table.set_index("patient_id").loc[ids].to_numpy()
    np.testing.assert_allclose(by_patient, features, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="do not line up"):
        features_table(features, ids[:8])


@pytest.mark.parametrize("kind", ["dual", "longitudinal"])
def test_one_pass_gives_exactly_the_features_and_probabilities_of_two(kind: str) -> None:
    crops = _crops(64)  # enough rows for the vectorised (not the scalar) elementwise kernels
    model = _network(**SMALL, kind=kind)
    features, probabilities = features_and_probabilities(model, crops, batch_size=32)
    assert_same_numbers(features, extract_features(model, crops, batch_size=32))
    assert_same_numbers(probabilities, predict_probabilities(model, crops, batch_size=32))
    assert features.dtype == np.float32 and probabilities.dtype == np.float64


def test_inference_reads_memory_mapped_crops(tmp_path) -> None:
    crops = _crops(5)
    np.save(tmp_path / "crops.npy", crops)
    mapped = np.load(tmp_path / "crops.npy", mmap_mode="r")
    for kind in ("dual", "transverse"):
        model = _network(kind=kind, **SMALL)
        np.testing.assert_array_equal(
            extract_features(model, mapped, batch_size=2),
            extract_features(model, crops, batch_size=2),
        )


def test_cpu_numerics_hold_until_the_last_overlapping_block_ends() -> None:
    """Two blocks open at once (two ThreadRunner nodes): the first to end must not switch
    oneDNN back on under the other; the last restores what the first found."""
    torch.set_num_threads(2)
    first, second = thread_independent_numerics("cpu"), thread_independent_numerics("cpu")
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not torch.backends.mkldnn.enabled and not torch._C._get_nnpack_enabled()
    assert torch.get_num_threads() == 1
    second.__exit__(None, None, None)
    assert torch.backends.mkldnn.enabled and torch._C._get_nnpack_enabled()
    assert torch.get_num_threads() == 2
    with thread_independent_numerics("cuda"):  # another device: nothing changes
        assert torch.backends.mkldnn.enabled and torch.get_num_threads() == 2


def test_single_view_network_uses_only_its_own_view() -> None:
    crops = _crops(4)
    model = _network(kind="longitudinal", **SMALL)
    changed_transverse = crops.copy()
    changed_transverse[:, 1] = 255 - changed_transverse[:, 1]
    changed_longitudinal = crops.copy()
    changed_longitudinal[:, 0] = 255 - changed_longitudinal[:, 0]
    base = predict_probabilities(model, crops)
    assert_same_numbers(predict_probabilities(model, changed_transverse), base)
    assert not np.allclose(predict_probabilities(model, changed_longitudinal), base)


def test_predictions_table_follows_the_output_contract() -> None:
    splits = pd.DataFrame(
        {
            "patient_id": ["a", "b"],
            "center": ["X", "Y"],
            "clnm": [0, 1],
            "split": ["train", "external"],
            "fold": [0, -1],
        }
    )
    table = predictions_table(np.array([0.2, 0.7]), splits, "dl_dual")
    assert list(table.columns) == ["patient_id", "center", "split", "model", "clnm", "probability"]
    assert table["model"].eq("dl_dual").all()
    assert table["probability"].tolist() == [0.2, 0.7]
    with pytest.raises(ValueError, match="1 probabilities for 2 patients"):
        predictions_table(np.array([0.2]), splits, "dl_dual")


def test_inference_rejects_crops_of_the_wrong_type() -> None:
    model = _network(**SMALL)
    with pytest.raises(ValueError, match="uint8"):
        extract_features(model, np.zeros((2, 2, 32, 32), dtype=np.float32))
    with pytest.raises(ValueError, match="2 views"):
        extract_features(model, np.zeros((2, 3, 32, 32), dtype=np.uint8))
