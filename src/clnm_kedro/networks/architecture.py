"""Dual-view and single-view CNNs reading greyscale ultrasound crops of one thyroid nodule.

A network takes a float tensor ``(B, V, S, S)`` holding the ``V`` views it reads (dual: the
longitudinal and the transverse view; single-view: one of them), standardises every image on
its own (zero mean, unit variance), passes each view through a CNN branch, fuses the view
embeddings and classifies. ``features`` returns the penultimate layer (the DL features used by
the fusion heads); ``forward`` returns one logit per patient.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from clnm_kedro.networks.data import VIEW_NAMES, config_section
from clnm_kedro.registry import NETWORK_VIEWS

logger = logging.getLogger(__name__)

TORCHVISION_BACKBONES: tuple[str, ...] = (
    "resnet18",
    "resnet34",
    "resnet50",
    "efficientnet_b0",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
)
BACKBONES: tuple[str, ...] = ("compact", *TORCHVISION_BACKBONES)
FUSIONS: tuple[str, ...] = ("concat", "gated", "attention")

NETWORK_DEFAULTS: dict[str, Any] = {
    "kind": "dual",  # dual | longitudinal | transverse
    "backbone": "compact",
    "pretrained": None,  # null | torchvision weights name (IMAGENET1K_V1) | state-dict file
    "compact_channels": [16, 32, 64, 128, 192],  # compact CNN: output channels of each stage
    "fusion": "concat",  # concat | gated | attention (dual only)
    "shared_branches": False,  # one CNN for both views instead of one per view
    "hidden_dim": 64,  # width of the penultimate layer = number of DL features
    "dropout": 0.3,
}

_STANDARDISE_EPS = 1e-5


def network_settings(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``network`` section of ``config`` merged over :data:`NETWORK_DEFAULTS`, checked."""
    settings = config_section(config, "network", NETWORK_DEFAULTS)
    if settings["kind"] not in NETWORK_VIEWS:
        raise ValueError(f"network.kind={settings['kind']!r} is not one of {sorted(NETWORK_VIEWS)}")
    if settings["backbone"] not in BACKBONES:
        raise ValueError(f"network.backbone={settings['backbone']!r} is not one of {BACKBONES}")
    if settings["fusion"] not in FUSIONS:
        raise ValueError(f"network.fusion={settings['fusion']!r} is not one of {FUSIONS}")
    channels = settings["compact_channels"]
    if not channels or any(int(width) < 1 for width in channels):
        raise ValueError(f"network.compact_channels must list positive widths, got {channels}")
    if int(settings["hidden_dim"]) < 1:
        raise ValueError(f"network.hidden_dim must be positive, got {settings['hidden_dim']}")
    if not 0.0 <= float(settings["dropout"]) < 1.0:
        raise ValueError(f"network.dropout must be in [0, 1), got {settings['dropout']}")
    return settings


class CompactBackbone(nn.Module):
    """A small CNN: stride-2 conv-BN-ReLU stages, then global average pooling.

    Parameters
    ----------
    channels
        Output channels of each stage; each stage halves the image side.
    """

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 1
        for stage, out_channels in enumerate(int(width) for width in channels):
            kernel = 5 if stage == 0 else 3
            layers += [
                nn.Conv2d(
                    in_channels, out_channels, kernel, stride=2, padding=kernel // 2, bias=False
                ),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = out_channels
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed ``(B, 1, S, S)`` images as ``(B, out_features)``."""
        return self.pool(self.body(x)).flatten(1)


def _first_conv_name(backbone: str) -> str:
    return "conv1" if backbone.startswith("resnet") else "features.0.0"


def _head_prefix(backbone: str) -> str:
    return "fc." if backbone.startswith("resnet") else "classifier."


def _replace_module(root: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def greyscale_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """A 1-input-channel copy of ``conv`` whose kernels are the sums over its input channels.

    A grey image fed as three identical RGB channels gives the same response, so pretrained
    RGB kernels keep their meaning.
    """
    grey = nn.Conv2d(
        1,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    with torch.no_grad():
        grey.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
        if conv.bias is not None:
            grey.bias.copy_(conv.bias)
    return grey


def _looks_like_path(spec: str) -> bool:
    return Path(spec).suffix in {".pt", ".pth", ".bin"} or "/" in spec or "\\" in spec


def _read_state_file(path: Path, backbone: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(
            f"network.pretrained: weights file {path} for backbone {backbone!r} does not exist"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"network.pretrained: {path} is not a readable torch state dict ({exc})"
        ) from exc
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"network.pretrained: {path} holds no state dict")
    return dict(state)


def _torchvision_state(spec: str, backbone: str) -> dict[str, torch.Tensor]:
    weights_enum = torchvision.models.get_model_weights(backbone)
    name = spec.rpartition(".")[2]
    try:
        weights = weights_enum[name]
    except KeyError:
        available = [member.name for member in weights_enum]
        raise ValueError(
            f"network.pretrained={spec!r}: no such torchvision weights for {backbone}; "
            f"available: {available} (or a path to a state-dict file, or null)"
        ) from None
    try:
        return weights.get_state_dict(progress=False)
    except Exception as exc:
        raise RuntimeError(
            f"Could not obtain the torchvision weights {backbone} {weights.name}: they are "
            f"downloaded on first use (network access needed) and cached in "
            f"{torch.hub.get_dir()}. Set network.pretrained to a local state-dict file or to "
            f"null (random initialisation). Cause: {exc}"
        ) from exc


def _load_backbone_state(
    model: nn.Module, state: Mapping[str, torch.Tensor], backbone: str, source: str
) -> None:
    head = _head_prefix(backbone)
    result = model.load_state_dict(state, strict=False)
    missing = [key for key in result.missing_keys if not key.startswith(head)]
    unexpected = [key for key in result.unexpected_keys if not key.startswith(head)]
    if missing or unexpected:
        raise ValueError(
            f"network.pretrained: {source} does not fit the {backbone} backbone; "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )


def build_backbone(backbone: str, pretrained: str | None, channels: list[int]) -> nn.Module:
    """One greyscale CNN branch ending in global pooling, with attribute ``out_features``.

    Parameters
    ----------
    backbone
        One of :data:`BACKBONES`.
    pretrained
        ``None`` (random initialisation), a torchvision weights name such as
        ``"IMAGENET1K_V1"`` (downloaded by torchvision), or the path of a state-dict file (for
        torchvision backbones: their own RGB state dict; for ``compact``: a
        :class:`CompactBackbone` state dict).
    channels
        Stage widths of the ``compact`` backbone.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"network.backbone={backbone!r} is not one of {BACKBONES}")
    if backbone == "compact":
        module = CompactBackbone(channels)
        if pretrained is not None:
            if not _looks_like_path(str(pretrained)) and not Path(pretrained).exists():
                raise ValueError(
                    "network.pretrained for the compact backbone must be a state-dict file "
                    f"(torchvision has no compact weights), got {pretrained!r}"
                )
            path = Path(pretrained).expanduser()
            module.load_state_dict(_read_state_file(path, backbone))
            logger.info("Compact backbone initialised from %s", path)
        return module

    model = getattr(torchvision.models, backbone)(weights=None)
    first = _first_conv_name(backbone)
    state: dict[str, torch.Tensor] | None = None
    source = ""
    if pretrained is not None:
        spec = str(pretrained)
        if _looks_like_path(spec) or Path(spec).expanduser().exists():
            path = Path(spec).expanduser()
            state, source = _read_state_file(path, backbone), str(path)
        else:
            state, source = _torchvision_state(spec, backbone), f"torchvision {spec}"
    rgb_state = state is not None and state.get(f"{first}.weight", torch.empty(0, 3)).shape[1] != 1
    if state is not None and rgb_state:
        _load_backbone_state(model, state, backbone, source)
    _replace_module(model, first, greyscale_conv(model.get_submodule(first)))
    if state is not None and not rgb_state:
        _load_backbone_state(model, state, backbone, source)
    if state is not None:
        logger.info(
            "%s backbone initialised from %s (first conv summed to greyscale)", backbone, source
        )

    if backbone.startswith("resnet"):
        out_features = model.fc.in_features
        model.fc = nn.Identity()
    elif backbone.startswith("efficientnet"):
        out_features = model.classifier[-1].in_features
        model.classifier = nn.Identity()
    else:  # mobilenet_v3: the classifier starts with Linear(pooled features, hidden)
        out_features = model.classifier[0].in_features
        model.classifier = nn.Identity()
    model.out_features = out_features
    return model


class ConcatFusion(nn.Module):
    """Concatenate the view embeddings: ``(B, V, E) -> (B, V * E)``."""

    def __init__(self, n_views: int, embedding_dim: int) -> None:
        super().__init__()
        self.out_features = n_views * embedding_dim

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Fuse ``(B, V, E)`` view embeddings."""
        return embeddings.flatten(1)


class GatedFusion(nn.Module):
    """Scale each view embedding by a sigmoid gate computed from all views, then concatenate."""

    def __init__(self, n_views: int, embedding_dim: int) -> None:
        super().__init__()
        self.gate = nn.Linear(n_views * embedding_dim, n_views)
        self.out_features = n_views * embedding_dim

    def view_weights(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Gate of each view, ``(B, V)`` in (0, 1)."""
        return torch.sigmoid(self.gate(embeddings.flatten(1)))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Fuse ``(B, V, E)`` view embeddings."""
        return (embeddings * self.view_weights(embeddings).unsqueeze(-1)).flatten(1)


class AttentionFusion(nn.Module):
    """Softmax attention over the views: a weighted mean of the view embeddings."""

    def __init__(self, n_views: int, embedding_dim: int, attention_dim: int = 64) -> None:
        super().__init__()
        self.score = nn.Sequential(
            nn.Linear(embedding_dim, attention_dim), nn.Tanh(), nn.Linear(attention_dim, 1)
        )
        self.out_features = embedding_dim

    def view_weights(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Attention weight of each view, ``(B, V)``, summing to 1."""
        return torch.softmax(self.score(embeddings).squeeze(-1), dim=1)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Fuse ``(B, V, E)`` view embeddings."""
        return (embeddings * self.view_weights(embeddings).unsqueeze(-1)).sum(dim=1)


_FUSION_MODULES: dict[str, type[nn.Module]] = {
    "concat": ConcatFusion,
    "gated": GatedFusion,
    "attention": AttentionFusion,
}


class SeededDropout(nn.Dropout):
    """``nn.Dropout`` whose masks come from :attr:`generator` while one is set.

    Training sets a generator of the network's own (:mod:`clnm_kedro.networks.random_streams`),
    so networks trained side by side in one process draw their masks from separate streams
    instead of sharing PyTorch's global RNG; without a generator it is ``nn.Dropout``.
    Checkpoints are unchanged: dropout has no weights.
    """

    generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or self.generator is None:
            return super().forward(x)
        keep = 1.0 - self.p
        mask = torch.empty_like(x).bernoulli_(keep, generator=self.generator)
        return x * mask * (1.0 / keep)


def standardise_images(images: torch.Tensor) -> torch.Tensor:
    """Standardise every image of ``(B, V, S, S)`` on its own: zero mean, unit variance."""
    images = images.float()
    variance, mean = torch.var_mean(images, dim=(-2, -1), keepdim=True, correction=0)
    return (images - mean) * torch.rsqrt(variance + _STANDARDISE_EPS)


class UltrasoundNetwork(nn.Module):
    """CNN branch per view (or one shared), view fusion, MLP classifier.

    Parameters
    ----------
    views
        Indices of the views it reads in the cached crops (0 longitudinal, 1 transverse).
    branches
        One backbone per view, or a single one shared by every view.
    fusion
        Fusion module for several views (ignored, identity, for one view).
    hidden_dim, dropout
        Width of the penultimate layer and the dropout before each linear layer.

    A network reading several views also has one linear classifier per view on that view's
    embedding, read only by ``forward(x, with_view_logits=True)`` while training (deep
    supervision: each branch must be predictive on its own, so the fused classifier cannot lean
    on one view and leave the other branch untrained); predictions and features never use them.
    """

    def __init__(
        self,
        views: tuple[int, ...],
        branches: nn.ModuleList,
        fusion: nn.Module,
        hidden_dim: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.views = tuple(views)
        self.view_names = tuple(VIEW_NAMES[view] for view in self.views)
        self.branches = branches
        self.fusion = fusion
        self.hidden = nn.Sequential(
            SeededDropout(dropout), nn.Linear(fusion.out_features, hidden_dim), nn.ReLU()
        )
        self.head = nn.Sequential(SeededDropout(dropout), nn.Linear(hidden_dim, 1))
        self.feature_dim = hidden_dim
        embedding_dim = branches[0].out_features
        self.view_heads = nn.ModuleList(
            nn.Sequential(SeededDropout(dropout), nn.Linear(embedding_dim, 1))
            for _ in (self.views if len(self.views) > 1 else ())
        )

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != len(self.views):
            raise ValueError(
                f"This network reads {len(self.views)} view(s) {self.view_names}: input must "
                f"be (batch, {len(self.views)}, size, size), got {tuple(x.shape)}"
            )

    def view_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """Branch embeddings ``(B, V, E)`` of the standardised views."""
        self._check_input(x)
        x = standardise_images(x)
        batch, n_views = x.shape[:2]
        if len(self.branches) == 1:
            flat = x.reshape(batch * n_views, 1, *x.shape[2:])
            return self.branches[0](flat).reshape(batch, n_views, -1)
        return torch.stack(
            [branch(x[:, view : view + 1]) for view, branch in enumerate(self.branches)], dim=1
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features ``(B, hidden_dim)``."""
        return self.hidden(self.fusion(self.view_embeddings(x)))

    def forward(
        self, x: torch.Tensor, with_view_logits: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """One CLNM logit per patient, ``(B,)``.

        With ``with_view_logits`` (what training asks for when it supervises each view) also
        each view's own logit, ``(B, V)`` (``V`` = 0 for a single-view network), from the same
        pass through the branches.
        """
        embeddings = self.view_embeddings(x)
        logit = self.head(self.hidden(self.fusion(embeddings))).squeeze(-1)
        if not with_view_logits:
            return logit
        if not len(self.view_heads):
            return logit, logit.new_zeros((logit.shape[0], 0))
        per_view = torch.cat(
            [head(embeddings[:, i]) for i, head in enumerate(self.view_heads)], dim=1
        )
        return logit, per_view


def build_network(config: Mapping[str, Any] | None) -> UltrasoundNetwork:
    """Build the network described by the ``network`` section of ``config``.

    Parameters
    ----------
    config
        The network parameter block; only its ``network`` section is read (defaults in
        :data:`NETWORK_DEFAULTS`).

    Returns
    -------
    UltrasoundNetwork
        Takes ``(B, V, S, S)`` floats with ``V`` = 2 for ``dual``, 1 for single-view kinds.
    """
    settings = network_settings(config)
    views = NETWORK_VIEWS[settings["kind"]]
    shared = bool(settings["shared_branches"]) or len(views) == 1
    n_branches = 1 if shared else len(views)
    branches = nn.ModuleList(
        build_backbone(settings["backbone"], settings["pretrained"], settings["compact_channels"])
        for _ in range(n_branches)
    )
    embedding_dim = branches[0].out_features
    if len(views) == 1:
        fusion: nn.Module = ConcatFusion(1, embedding_dim)
    else:
        fusion = _FUSION_MODULES[settings["fusion"]](len(views), embedding_dim)
    return UltrasoundNetwork(
        views, branches, fusion, int(settings["hidden_dim"]), float(settings["dropout"])
    )
