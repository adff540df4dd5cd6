"""Power of the paired DeLong test: closed-form references, simulation and the evaluation rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from clnm_kedro.metrics.delong import auc_covariance
from clnm_kedro.metrics.power import (
    detectable_difference,
    hanley_mcneil_variance,
    paired_auc_power,
    power_from_covariance,
    power_of_difference,
    power_statement,
    sample_size_for_difference,
    simulated_rejection_rate,
)
from clnm_kedro.reporting.model_metrics import (
    DELONG_COLUMNS,
    POWER_COLUMNS,
    delong_comparisons,
    power_block,
)


def binormal(n: int, prevalence: float, auc_a: float, auc_b: float, rho: float):
    """Cohorts of ``n`` patients with two correlated binormal scores of the given AUCs."""
    shift = np.sqrt(2.0) * stats.norm.ppf([auc_a, auc_b])
    events = round(n * prevalence)
    cov = [[1.0, rho], [rho, 1.0]]

    def sample(rng: np.random.Generator):
        y = np.r_[np.ones(events, int), np.zeros(n - events, int)]
        z = rng.multivariate_normal([0.0, 0.0], cov, size=n)
        return y, z[:, 0] + shift[0] * y, z[:, 1] + shift[1] * y

    return sample


def test_detectable_difference_is_z_alpha_plus_z_beta_standard_deviations() -> None:
    # the textbook rule delta = (z_{1-alpha/2} + z_{1-beta}) * sd, 2.8016 sd at 80 % / 5 %;
    # the exact two-sided root differs only by the far tail (< 1e-5)
    assert detectable_difference(1.0) == pytest.approx(1.959964 + 0.841621, abs=1e-4)
    assert detectable_difference(0.03, alpha=0.01, power=0.9) == pytest.approx(
        0.03 * (2.575829 + 1.281552), abs=1e-5
    )
    assert power_of_difference(0.0, 0.02) == pytest.approx(0.05)


def test_needed_sample_size_gives_the_wanted_power_and_scales_as_one_over_delta_squared() -> None:
    sd, n = 0.03, 154
    needed = sample_size_for_difference(0.02, sd, n)
    # 1 / N scaling of DeLong's variance: at N* the SD is sd * sqrt(n / N*)
    assert power_of_difference(0.02, sd * math.sqrt(n / needed)) == pytest.approx(0.80, abs=1e-9)
    # classic formula n * ((z_a + z_b) sd / delta)^2 = 154 * (2.8016 * 1.5)^2 = 2720
    assert needed == pytest.approx(154 * (2.801585 * 0.03 / 0.02) ** 2, rel=1e-4)
    assert sample_size_for_difference(0.01, sd, n) == pytest.approx(4 * needed)
    assert math.isinf(sample_size_for_difference(0.0, sd, n))


def test_hanley_mcneil_variance_against_the_published_formula() -> None:
    # Hanley & McNeil 1982, eq. 2, by hand for A = 0.8, 50 cases, 100 controls
    q1, q2 = 0.8 / 1.2, 2 * 0.64 / 1.8
    expected = (0.8 * 0.2 + 49 * (q1 - 0.64) + 99 * (q2 - 0.64)) / 5000
    assert hanley_mcneil_variance(0.8, 50, 100) == pytest.approx(expected, rel=1e-12)
    assert hanley_mcneil_variance(0.95, 50, 100) < hanley_mcneil_variance(0.8, 50, 100)


def test_stated_power_matches_the_rejection_rate_of_repeated_comparisons() -> None:
    """The detectable difference on a study-sized external set, checked by simulation."""
    rng = np.random.default_rng(2026)
    n, prevalence, auc, rho = 154, 0.32, 0.75, 0.7
    big = 100_000
    y, a, b = binormal(big, prevalence, auc, auc, rho)(rng)
    _, aucs, cov = auc_covariance(y, a, b)
    design = power_from_covariance(aucs, cov * big / n, round(n * prevalence), n)
    assert 0.06 < design.detectable_difference < 0.12
    rate = simulated_rejection_rate(
        rng, binormal(n, prevalence, auc + design.detectable_difference, auc, rho), 600
    )
    assert rate == pytest.approx(0.80, abs=0.05)
    # and with no difference the test rejects at its level
    null_rate = simulated_rejection_rate(rng, binormal(n, prevalence, auc, auc, rho), 600)
    assert null_rate == pytest.approx(0.05, abs=0.03)


def test_paired_power_on_data_and_its_sentence() -> None:
    rng = np.random.default_rng(4)
    y, a, b = binormal(300, 0.3, 0.80, 0.77, 0.8)(rng)
    result = paired_auc_power(y, a, b)
    assert result.n == 300 and result.events == 90
    assert result.difference == pytest.approx(result.auc_a - result.auc_b)
    assert 0.0 < result.correlation < 1.0
    assert result.events_needed == pytest.approx(result.n_needed * 0.3)
    text = power_statement(result, "Dual", "Longitudinal", "external test set")
    assert text.startswith("This external test set (300 patients, 90 with CLNM) can detect")
    assert f"{result.detectable_difference:.2f} or more" in text
    # identical scores: nothing to detect, said so instead of a division by zero
    same = paired_auc_power(y, a, a)
    assert math.isnan(same.detectable_difference)
    assert "identically" in power_statement(same, "A", "B", "external test set")


@pytest.mark.parametrize("alpha, power", [(0.0, 0.8), (0.05, 1.0), (1.2, 0.8), (0.5, 0.3)])
def test_bad_design_stops_with_a_clear_message(alpha: float, power: float) -> None:
    with pytest.raises(ValueError, match=r"alpha|power"):
        detectable_difference(0.03, alpha=alpha, power=power)


def test_delong_rows_and_metrics_json_carry_the_power() -> None:
    rng = np.random.default_rng(5)
    y, a, b = binormal(200, 0.32, 0.80, 0.74, 0.6)(rng)
    rows = [
        pd.DataFrame(
            {
                "patient_id": [f"B{i:03d}" for i in range(200)],
                "center": "CENTER_B",
                "split": "external",
                "model": model,
                "clnm": y,
                "probability": stats.norm.cdf(score),
            }
        )
        for model, score in (("dl_dual", a), ("dl_longitudinal", b))
    ]
    tests = delong_comparisons(pd.concat(rows), [("dl_dual", "dl_longitudinal")], ["external"])
    assert list(tests.columns) == [*DELONG_COLUMNS, *POWER_COLUMNS]
    expected = paired_auc_power(y, a, b)  # AUC and DeLong are rank-based: same as on the probits
    row = tests.iloc[0]
    assert row["detectable_difference"] == pytest.approx(expected.detectable_difference)
    assert row["n_needed"] == pytest.approx(expected.n_needed)
    assert "DL dual-channel" in row["power_statement"]
    block = power_block(tests)["external"]["dl_dual_vs_dl_longitudinal"]
    assert block["auc_difference"] == pytest.approx(expected.difference)
    assert block["events"] == 64
