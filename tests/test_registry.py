"""The one declaration of views and models (clnm_kedro.registry): the output contract it
must keep, its agreement with the configuration, and the pipelines built from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from clnm_kedro import registry, settings
from clnm_kedro.heads import HeadSpec
from clnm_kedro.pipelines.clinical_modeling import create_pipeline as clinical_pipeline
from clnm_kedro.pipelines.evaluation import create_pipeline as evaluation_pipeline
from clnm_kedro.pipelines.fusion import create_pipeline as fusion_pipeline
from clnm_kedro.pipelines.inference.pipeline import create_scoring_pipeline
from clnm_kedro.scoring.results import RESULT_COLUMNS

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture(scope="module")
def base_parameters() -> dict:
    loader = OmegaConfigLoader(conf_source=str(CONF), env="base", **settings.CONFIG_LOADER_ARGS)
    return loader["parameters"]


def test_the_output_contract_names_stay_as_documented() -> None:
    """docs/output_contract.md: model names and the report's order, the scoring columns, the
    study's DeLong comparisons, the views of the input contract."""
    assert registry.VIEWS == ("longitudinal", "transverse")
    assert registry.MODEL_NAMES == (
        "dl_dual",
        "dl_longitudinal",
        "dl_transverse",
        "dl_features",
        "clinical",
        "combined",
    )
    assert registry.STUDY_COMPARISONS == (
        ("dl_dual", "dl_longitudinal"),
        ("dl_dual", "dl_transverse"),
        ("combined", "dl_features"),
        ("combined", "clinical"),
    )
    assert registry.PRIMARY_MODELS == ("combined", "dl_dual", "clinical")
    assert [c for c in RESULT_COLUMNS if c.startswith("probability_")] == [
        "probability_combined",
        "probability_clinical",
        "probability_dl_features",
        "probability_dl_dual",
        "probability_dl_longitudinal",
        "probability_dl_transverse",
    ]
    assert registry.NETWORK_VIEWS == {"dual": (0, 1), "longitudinal": (0,), "transverse": (1,)}


def test_parameter_blocks_name_the_declared_models(base_parameters: dict) -> None:
    networks = base_parameters["dl_training"]["models"]
    assert sorted(networks) == sorted(registry.NETWORK_MODELS)
    for model in registry.NETWORK_MODELS:
        assert networks[model]["model"] == model
        assert networks[model]["views"] == registry.model_spec(model).views
    for model in registry.HEAD_MODELS:
        block = base_parameters
        for key in registry.model_spec(model).parameters.split("."):
            block = block[key]
        assert block["model"] == model


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"views": "elastography"}, r"reads 'elastography', not one of"),
        ({"compared_with": ("dl_doppler",)}, r"compared with unknown models \['dl_doppler'\]"),
        ({"name": "dl_longitudinal"}, r"declared twice"),
    ],
)
def test_a_declaration_that_does_not_fit_stops_at_import(change: dict, message: str) -> None:
    models = list(registry.MODELS)
    models[0] = dataclasses.replace(models[0], **change)
    with pytest.raises(ValueError, match=message):
        registry.check_declarations(models, registry.FEATURE_NETWORK)
    with pytest.raises(ValueError, match="feature network 'clinical'"):
        registry.check_declarations(registry.MODELS, "clinical")


def test_every_declared_model_is_built_scored_and_evaluated() -> None:
    heads = clinical_pipeline() + fusion_pipeline()
    built = heads.all_outputs()
    for model in registry.HEAD_MODELS:
        assert {f"{model}_model_input", f"{model}_predictions", f"{model}_head"} <= built
    scored = create_scoring_pipeline().all_outputs()
    for model in registry.NETWORK_MODELS:
        assert f"{model}_inference_probabilities" in scored
    for model in registry.HEAD_MODELS:
        assert f"{model}_inference_scores" in scored
    evaluated = evaluation_pipeline().inputs()
    assert {f"{model}_predictions" for model in registry.HEAD_MODELS} <= evaluated
    assert {f"{model}_training_history" for model in registry.NETWORK_MODELS} <= evaluated


def test_a_head_reads_only_what_the_registry_says() -> None:
    """The clinical head never waits for the networks; the fusion heads read their features."""
    inputs = {node.name: node.inputs for node in (clinical_pipeline() + fusion_pipeline()).nodes}
    features = f"{registry.FEATURE_NETWORK}_features"
    assert features not in inputs["build_clinical_model_input"]
    assert features in inputs["build_dl_features_model_input"]
    assert "cohort_table" not in inputs["build_dl_features_model_input"]
    assert {features, "cohort_table", "params:fusion.combined"} <= set(
        inputs["build_combined_model_input"]
    )


def test_the_dl_feature_prefix_is_not_a_setting(base_parameters: dict) -> None:
    """The DL feature columns' names are fixed (registry.DL_PREFIX): a `heads.dl_prefix` left in
    a configuration stops the run with the allowed keys, instead of being ignored."""
    heads = {**base_parameters["heads"], "dl_prefix": "deep_"}
    with pytest.raises(ValueError, match=r"heads: unknown keys \['dl_prefix'\]"):
        HeadSpec.from_params(heads, check_values=False)
