"""Where the heads' Optuna studies live, when the machine's credentials say so.

The parameter ``optuna_storage_url`` names the default store (a SQLite file: no secret). A
shared PostgreSQL store needs a password, and parameters are logged to MLflow and shown by
kedro-viz, so its URL comes from Kedro's credentials instead (``conf/local/credentials.yml``,
git-ignored), through this catalog entry::

    optuna_storage:                 # conf/local/credentials.yml
      url: postgresql+psycopg2://optuna:<password>@dbhost/clnm_optuna

The dataset only hands the URL to the head nodes (``validate_head_settings``); it never
writes, and nothing it describes (kedro-viz, logs, ``repr``) shows the password.
"""

from __future__ import annotations

from typing import Any

from kedro.io import AbstractDataset, DatasetError
from sqlalchemy.engine import make_url

CREDENTIALS_KEYS = frozenset({"url"})


def hide_password(url: str | None) -> str | None:
    """``url`` with its password, if any, replaced by ``***`` (``None`` stays ``None``)."""
    if url is None:
        return None
    return make_url(url).render_as_string(hide_password=True)


def storage_url_in_use(parameter: str | None, from_credentials: str | None) -> str | None:
    """The store the heads use: the credentials' URL when given, else the parameter's."""
    return from_credentials if from_credentials is not None else parameter


class OptunaStorageDataset(AbstractDataset[str | None, str | None]):
    """The Optuna storage URL from Kedro credentials; ``None`` when they give none.

    Loads the URL (password included, for the nodes that open the store) or ``None``, in
    which case the ``optuna_storage_url`` parameter applies. Read-only.
    """

    def __init__(
        self,
        credentials: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        credentials = dict(credentials or {})
        unknown = sorted(set(credentials) - CREDENTIALS_KEYS)
        if unknown:
            raise DatasetError(
                f"Unknown keys {unknown} in the credentials 'optuna_storage'; allowed: "
                f"{sorted(CREDENTIALS_KEYS)} (conf/<env>/credentials.yml)."
            )
        url = credentials.get("url")
        if url is not None:
            try:
                make_url(url)
            except Exception as error:  # the value is a secret: never echoed
                raise DatasetError(
                    "The credentials 'optuna_storage' have a 'url' that is not a valid "
                    f"SQLAlchemy URL (value not shown: it may hold a password): "
                    f"{type(error).__name__}."
                ) from None
        self._url: str | None = url
        self.metadata = metadata

    def load(self) -> str | None:
        """The storage URL from the credentials, or ``None``."""
        return self._url

    def save(self, data: str | None) -> None:
        raise DatasetError("The Optuna storage entry is read-only: studies are written by Optuna.")

    def _exists(self) -> bool:
        return True

    def _describe(self) -> dict[str, Any]:
        return {
            "url": hide_password(self._url) if self._url is not None else None,
            "source": "credentials" if self._url is not None else "parameter optuna_storage_url",
        }
