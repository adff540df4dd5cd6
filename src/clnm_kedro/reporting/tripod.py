"""The TRIPOD+AI checklist (Collins et al., BMJ 2024;385:e078378) against this report.

Each item is either filled by a section of the report (its anchor) or left to the authors.
The item texts are short paraphrases; the guideline itself has the full wording.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["TRIPOD_AI_ITEMS", "TripodItem", "tripod_rows"]


class TripodItem(NamedTuple):
    """One checklist item: number, topic, what it asks, and the report section that fills it
    (``""``: the authors must write it)."""

    item: str
    topic: str
    asks: str
    section: str


# ruff: noqa: E501 (one item per line reads as the checklist does)
TRIPOD_AI_ITEMS: tuple[TripodItem, ...] = (
    TripodItem("1", "Title", "development/evaluation, population, outcome", ""),
    TripodItem("2", "Abstract", "structured summary (TRIPOD+AI for Abstracts)", ""),
    TripodItem("3a-c", "Background", "healthcare context, rationale, existing models", ""),
    TripodItem("4", "Objectives", "aims, development and/or validation", ""),
    TripodItem("5a", "Data sources", "sources per centre, representativeness", "cohort"),
    TripodItem("5b", "Data sources", "dates of the data collected", ""),
    TripodItem("6a-c", "Participants", "setting, eligibility, treatments received", ""),
    TripodItem("7", "Data preparation", "pre-processing, data quality, exclusions", "cohort"),
    TripodItem("8a-c", "Outcome", "definition of CLNM, how and when assessed, blinding", ""),
    TripodItem("9a", "Predictors", "candidate predictors and their pre-selection", "table-one"),
    TripodItem("9b-c", "Predictors", "definition, measurement and blinding of predictors", ""),
    TripodItem("10", "Sample size", "how the study size was arrived at", "sample-size"),
    TripodItem("11", "Missing data", "how missing data were handled", "table-one"),
    TripodItem("12a", "Analytical methods", "data used for development and evaluation", "study-table"),
    TripodItem("12c", "Analytical methods", "model type, building, hyperparameter tuning", "classifiers"),
    TripodItem("12e", "Analytical methods", "performance measures and their intervals", "methods"),
    TripodItem("12f", "Analytical methods", "model updating / recalibration", ""),
    TripodItem("13", "Class imbalance", "methods for class imbalance", "parameters"),
    TripodItem("14", "Fairness", "approaches to fairness across subgroups", "subgroups"),
    TripodItem("15", "Model output", "output form and any cut-off", "cut-offs"),
    TripodItem("16", "Training vs evaluation", "differences between development and evaluation data", "table-one"),
    TripodItem("17", "Ethical approval", "ethics committee and consent", ""),
    TripodItem("18a-f", "Open science", "funding, conflicts, protocol, registration, data and code", ""),
    TripodItem("19", "Patient and public involvement", "involvement of patients and public", ""),
    TripodItem("20a", "Participants", "flow of participants, numbers with the outcome", "cohort"),
    TripodItem("20b", "Participants", "characteristics by data source", "table-one"),
    TripodItem("20c", "Participants", "comparison of development and evaluation data", "table-one"),
    TripodItem("21", "Model development", "participants and outcome events per analysis", "study-table"),
    TripodItem("22", "Model specification", "full model or how to access it", "odds-ratios"),
    TripodItem("23a", "Model performance", "performance with confidence intervals", "calibration"),
    TripodItem("23b", "Model performance", "performance in key subgroups", "subgroups"),
    TripodItem("24", "Model updating", "results of any model updating", ""),
    TripodItem("25", "Interpretation", "overall interpretation, fairness", "plain-summary"),
    TripodItem("26", "Limitations", "non-representative samples, few events, overfitting", ""),
    TripodItem("27a-c", "Usability", "handling poor-quality inputs, user interaction, applicability", ""),
)  # fmt: skip


def tripod_rows(sections: dict[str, str]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """``(filled, to_write)``: items with the heading of the section that fills them (only
    sections present in this report), and items the authors must write."""
    filled, to_write = [], []
    for item in TRIPOD_AI_ITEMS:
        row = {"item": item.item, "topic": item.topic, "asks": item.asks}
        if item.section and item.section in sections:
            filled.append({**row, "anchor": item.section, "section": sections[item.section]})
        else:
            to_write.append(row)
    return filled, to_write
