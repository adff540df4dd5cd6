"""Evaluation results turned into tables, figures, Grad-CAM heatmaps and the HTML report.

Plain modules, importable without Kedro:

- :mod:`~clnm_kedro.reporting.predictions`: gather and validate the predictions tables;
- :mod:`~clnm_kedro.reporting.model_metrics`: metrics per model and split, Youden thresholds,
  paired DeLong tests, subgroup and oracle AUCs, MLflow metric names;
- :mod:`~clnm_kedro.reporting.tables`: the study table and the other tables, formatted;
- :mod:`~clnm_kedro.reporting.figures`: ROC, calibration, decision, training and Grad-CAM
  figures;
- :mod:`~clnm_kedro.reporting.gradcam`: Grad-CAM heatmaps of the networks' views;
- :mod:`~clnm_kedro.reporting.table_one`: Table 1 (baseline characteristics, tests, missing);
- :mod:`~clnm_kedro.reporting.odds_ratios`: univariable and multivariable logistic odds ratios;
- :mod:`~clnm_kedro.reporting.calibration_stats`: calibration with intervals, smoothed curves;
- :mod:`~clnm_kedro.reporting.clinical_utility`: net benefit vs treat-all with intervals;
- :mod:`~clnm_kedro.reporting.sample_size`: Riley et al.'s minimum sample size;
- :mod:`~clnm_kedro.reporting.summary`: the plain-language summary, from the numbers;
- :mod:`~clnm_kedro.reporting.tripod`: the TRIPOD+AI checklist against the report;
- :mod:`~clnm_kedro.reporting.report`: the self-contained HTML report, rendered from a Jinja2
  template (``templates/report.html.j2``).
"""
