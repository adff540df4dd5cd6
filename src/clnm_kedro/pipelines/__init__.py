"""The project's Kedro pipelines, one folder each (registered by name)."""

# A training run, in order: what plain `kedro run` (`__default__`) runs on the cohort that
# `cohort_dir` names. `simulate` and `inference` are not part of it.
TRAINING_PIPELINES: tuple[str, ...] = (
    "preprocessing",
    "dl_training",
    "feature_extraction",
    "clinical_modeling",
    "fusion",
    "evaluation",
)
