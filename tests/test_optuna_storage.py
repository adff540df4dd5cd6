"""The Optuna storage URL from Kedro credentials (catalog entry ``optuna_storage``): it
replaces the parameter, and its password shows nowhere (repr, kedro-viz, errors, records)."""

from __future__ import annotations

import pytest
import yaml
from kedro.io import DataCatalog, DatasetError

from clnm_kedro.datasets import OptunaStorageDataset
from clnm_kedro.pipelines.head_template import validate_head_settings
from kedro_project import PROJECT_ROOT

SECRET = "s3cr3t-pw"
URL = f"postgresql+psycopg2://optuna:{SECRET}@dbhost:5432/clnm_optuna"
HEADS = {
    "families": ["logistic_regression"],
    "n_trials": 1,
    "cv": {"n_splits": 3},
    "search_space": {
        "logistic_regression": {"C": {"type": "float", "low": 0.01, "high": 10.0, "log": True}}
    },
}


def test_credentials_url_replaces_the_parameter_and_never_shows_its_password() -> None:
    catalog = DataCatalog.from_config(
        {
            "optuna_storage": {
                "type": "clnm_kedro.datasets.OptunaStorageDataset",
                "credentials": "optuna_storage",
            }
        },
        credentials={"optuna_storage": {"url": URL}},
    )
    loaded = catalog.load("optuna_storage")
    assert loaded == URL  # the nodes get the password: they open the store
    dataset = catalog.get("optuna_storage")
    assert SECRET not in repr(dataset) and "@dbhost:5432/clnm_optuna" in repr(dataset)
    settings = validate_head_settings(
        HEADS, {"model": "clinical"}, "sqlite:///data/06_models/optuna.db", 1, loaded
    )
    assert settings.storage_url == URL and SECRET not in repr(settings)
    # Without credentials the parameter applies.
    default = validate_head_settings(
        HEADS, {"model": "clinical"}, "sqlite:///data/06_models/optuna.db", 1, None
    )
    assert default.storage_url == "sqlite:///data/06_models/optuna.db"


def test_bad_credentials_are_named_without_echoing_them() -> None:
    with pytest.raises(DatasetError, match=r"not a valid SQLAlchemy URL \(value not") as error:
        OptunaStorageDataset(credentials={"url": f"not a url {SECRET}"})
    assert SECRET not in str(error.value)
    with pytest.raises(DatasetError, match=r"Unknown keys \['password'\]"):
        OptunaStorageDataset(credentials={"url": URL, "password": SECRET})
    with pytest.raises(DatasetError, match="read-only"):
        OptunaStorageDataset().save(URL)


def test_committed_credentials_hold_no_value() -> None:
    """conf/base/credentials.yml is in git: empty defaults only (real ones go to conf/local)."""

    def values(entry: object) -> list[object]:
        if isinstance(entry, dict):
            return [v for item in entry.values() for v in values(item)]
        return [entry]

    committed = yaml.safe_load((PROJECT_ROOT / "conf/base/credentials.yml").read_text())
    assert "optuna_storage" in committed
    assert values(committed) == [None] * len(values(committed))
