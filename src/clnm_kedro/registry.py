"""The views and the models of the study, declared once; pipelines, catalog factories,
reporting and scoring iterate over these declarations.

- :data:`VIEWS`: the ultrasound views of every patient, in the order of axis 1 of ``roi_crops``
  (and of the cohort folder's image files and ``rois.csv`` rows).
- :data:`MODELS`: every model, in the order the report lists them. A *network* reads some of the
  views (its ``dl_training.models.<name>`` block says which, with the same words); a *head* is a
  tuned classifier (``head_template``) on a model-input table: the clinical indicators, the
  feature network's DL features, or both.

The model names are the output contract: they are the ``model`` column of ``predictions.csv``,
the keys of ``metrics.json`` and the prefixes of the datasets (``<model>_predictions``, ...).
Adding a model: one :class:`ModelSpec` here plus its parameter block; adding a view: its name in
:data:`VIEWS` (the cohort folder then needs an image named after it and a ``rois.csv``
row per patient, docs/input_contract.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DL_PREFIX",
    "DUAL",
    "FEATURE_NETWORK",
    "HEAD_MODELS",
    "MODELS",
    "MODEL_LABELS",
    "MODEL_NAMES",
    "NETWORK_MODELS",
    "NETWORK_VIEWS",
    "PRIMARY_MODEL",
    "PRIMARY_MODELS",
    "SCORED_MODELS",
    "STUDY_COMPARISONS",
    "VIEWS",
    "ModelSpec",
    "check_declarations",
    "model_spec",
]

VIEWS: tuple[str, ...] = ("longitudinal", "transverse")
# The network kind that reads every view (one CNN branch each, fused); a single-view network's
# kind is its view's name.
DUAL = "dual"
# Index of each view along axis 1 of roi_crops, by network kind (``network.kind``, and
# ``dl_training.models.<model>.views``).
NETWORK_VIEWS: dict[str, tuple[int, ...]] = {
    DUAL: tuple(range(len(VIEWS))),
    **{view: (index,) for index, view in enumerate(VIEWS)},
}
# Names of the deep-learning feature columns: dl_000, dl_001, ... (written by feature
# extraction, read by the heads, which reduce only these). A fixed name, not a setting: a
# clinical column starting with it is reported as a clash.
DL_PREFIX = "dl_"


@dataclass(frozen=True)
class ModelSpec:
    """One model of the study.

    Attributes
    ----------
    name
        Its name in predictions, ``metrics.json``, MLflow and dataset names (``<name>_...``).
    kind
        ``network`` (a CNN on the ultrasound views) or ``head`` (a tuned classifier on a table).
    label
        Its name in the report.
    views
        Network: its kind, i.e. which views it reads (a key of :data:`NETWORK_VIEWS`).
    parameters
        Head: its parameter block (``clinical_modeling``, ``fusion.<name>``).
    dl_features
        Head: reads the DL features of :data:`FEATURE_NETWORK`.
    clinical
        Head: reads the clinical indicators (the block's ``clinical_columns``).
    compared_with
        The models whose AUCs the study compares with this one's (paired DeLong tests).
    summary_rank
        Its rank among the models the plain-language summary speaks about first (``None``: not
        one of them).
    scoring_rank
        Its place among the probability columns of scoring's results (output contract); rank 0
        is the primary answer (``probability`` and the risk group). ``None``: after the ranked
        ones, in report order.
    """

    name: str
    kind: Literal["network", "head"]
    label: str
    views: str = ""
    parameters: str = ""
    dl_features: bool = False
    clinical: bool = False
    compared_with: tuple[str, ...] = ()
    summary_rank: int | None = None
    scoring_rank: int | None = None

    @property
    def pipeline(self) -> str:
        """The pipeline that builds the model (``dl_training``, ``clinical_modeling``, ...)."""
        return "dl_training" if self.kind == "network" else self.parameters.split(".")[0]


# In the order the report lists them.
MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        "dl_dual",
        "network",
        "DL dual-channel",
        views=DUAL,
        compared_with=("dl_longitudinal", "dl_transverse"),
        summary_rank=1,
        scoring_rank=3,
    ),
    ModelSpec(
        "dl_longitudinal", "network", "DL longitudinal", views="longitudinal", scoring_rank=4
    ),
    ModelSpec("dl_transverse", "network", "DL transverse", views="transverse", scoring_rank=5),
    ModelSpec(
        "dl_features",
        "head",
        "DL_F (DL features)",
        parameters="fusion.dl_features",
        dl_features=True,
        scoring_rank=2,
    ),
    ModelSpec(
        "clinical",
        "head",
        "Clinical",
        parameters="clinical_modeling",
        clinical=True,
        summary_rank=2,
        scoring_rank=1,
    ),
    ModelSpec(
        "combined",
        "head",
        "Combined (DL_F + clinical)",
        parameters="fusion.combined",
        dl_features=True,
        clinical=True,
        compared_with=("dl_features", "clinical"),
        summary_rank=0,
        scoring_rank=0,
    ),
)
# The network whose penultimate layer gives the heads their DL features.
FEATURE_NETWORK = "dl_dual"

MODEL_NAMES: tuple[str, ...] = tuple(spec.name for spec in MODELS)
MODEL_LABELS: dict[str, str] = {spec.name: spec.label for spec in MODELS}
NETWORK_MODELS: tuple[str, ...] = tuple(spec.name for spec in MODELS if spec.kind == "network")
HEAD_MODELS: tuple[str, ...] = tuple(spec.name for spec in MODELS if spec.kind == "head")
# The study's paired DeLong comparisons (model, compared with), in report order.
STUDY_COMPARISONS: tuple[tuple[str, str], ...] = tuple(
    (spec.name, other) for spec in MODELS for other in spec.compared_with
)
# The models the plain-language summary speaks about first, the first present first.
PRIMARY_MODELS: tuple[str, ...] = tuple(
    spec.name
    for spec in sorted(
        (spec for spec in MODELS if spec.summary_rank is not None),
        key=lambda spec: spec.summary_rank,
    )
)
# The models scored, in the order of the results' probability columns.
SCORED_MODELS: tuple[str, ...] = tuple(
    spec.name
    for _, spec in sorted(
        enumerate(MODELS),
        key=lambda item: (item[1].scoring_rank is None, item[1].scoring_rank or 0, item[0]),
    )
)
# The answer of scoring (its probability and risk group come first in the results).
PRIMARY_MODEL = SCORED_MODELS[0]


def model_spec(name: str) -> ModelSpec:
    """The declaration of the model ``name``."""
    for spec in MODELS:
        if spec.name == name:
            return spec
    raise KeyError(f"Unknown model {name!r}; the models are {list(MODEL_NAMES)}.")


def check_declarations(models: Sequence[ModelSpec], feature_network: str) -> None:
    """Raise ``ValueError`` unless the declarations agree with each other (run on import, so a
    typo here stops the project at once)."""
    names = [spec.name for spec in models]
    if len(set(names)) != len(names) or len(set(VIEWS)) != len(VIEWS):
        raise ValueError(f"A model or view name is declared twice: {names}, {list(VIEWS)}.")
    for spec in models:
        if spec.kind == "network" and spec.views not in NETWORK_VIEWS:
            raise ValueError(
                f"Network {spec.name} reads {spec.views!r}, not one of {sorted(NETWORK_VIEWS)}."
            )
        if spec.kind == "head" and not spec.parameters:
            raise ValueError(f"Head {spec.name} has no parameter block.")
        if spec.kind == "head" and not (spec.dl_features or spec.clinical):
            raise ValueError(f"Head {spec.name} reads neither DL features nor clinical columns.")
        unknown = sorted(set(spec.compared_with) - set(names))
        if unknown:
            raise ValueError(f"{spec.name} is compared with unknown models {unknown}.")
    if not any(spec.name == feature_network and spec.kind == "network" for spec in models):
        raise ValueError(f"The feature network {feature_network!r} is not a declared network.")


check_declarations(MODELS, FEATURE_NETWORK)
