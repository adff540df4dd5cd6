"""Errors raised while reading a cohort folder.

Two kinds, because they call for different actions:

- :class:`CohortError` — the cohort as a whole cannot be used (a required column is missing,
  a patient appears twice, no external centre...). The run stops; the message names the file and
  the offending rows or patients so that the data can be fixed.
- :class:`ImageReadError` — one image cannot be used. Preprocessing excludes that patient and
  records the reason in the data-quality report; it never stops the run.
"""

from __future__ import annotations

from pathlib import Path


class CohortError(ValueError):
    """The cohort cannot be used as it is; the message says where and why."""


class ImageReadError(ValueError):
    """One image file cannot be read as a 2-D greyscale image.

    Parameters
    ----------
    patient_id
        The patient the image belongs to ("" when not known).
    path
        The image file.
    reason
        What is wrong with it, in plain words.
    """

    def __init__(self, patient_id: str, path: Path | str, reason: str) -> None:
        self.patient_id = patient_id
        self.path = Path(path)
        self.reason = reason
        who = f"patient {patient_id}: " if patient_id else ""
        super().__init__(f"{who}cannot read image '{self.path}': {reason}")
