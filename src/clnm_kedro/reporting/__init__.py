"""Evaluation results turned into tables, figures, Grad-CAM heatmaps and the HTML report.

Plain modules, importable without Kedro:

- :mod:`~clnm_kedro.reporting.predictions`: gather and validate the predictions tables;
- :mod:`~clnm_kedro.reporting.model_metrics`: metrics per model and split, Youden thresholds,
  paired DeLong tests, subgroup and oracle AUCs, MLflow metric names;
- :mod:`~clnm_kedro.reporting.tables`: the study table and the other tables, formatted;
- :mod:`~clnm_kedro.reporting.figures`: ROC, calibration, decision, training and Grad-CAM
  figures;
- :mod:`~clnm_kedro.reporting.gradcam`: Grad-CAM heatmaps of the networks' views;
- :mod:`~clnm_kedro.reporting.report`: the self-contained HTML report.
"""
