"""Project hooks (registered in ``settings.py``), one concern per module:

- :mod:`~clnm_kedro.hooks.unfinished_outputs`: a run that stops half-way leaves nothing that
  ``kedro run --only-missing-outputs`` would mistake for complete;
- :mod:`~clnm_kedro.hooks.run_lock`: one run at a time per project data folder;
- :mod:`~clnm_kedro.hooks.run_status`: an MLflow run status (and Optuna trial states) that tell
  the truth after an interruption;
- :mod:`~clnm_kedro.hooks.trained_on`: inference warns when it scores training patients;
- :mod:`~clnm_kedro.hooks.same_numbers`: PyTorch's threads and OpenBLAS's kernels, for the same
  numbers on any machine.
"""

from clnm_kedro.hooks.run_lock import (
    LOCK_NAME,
    LOCK_WAIT_ENV,
    RunLock,
    RunLockedError,
    RunLockHooks,
)
from clnm_kedro.hooks.run_status import (
    END_REASON_TAG,
    TAG_PREFIX,
    RunStatusHooks,
    Terminated,
    fail_stale_optuna_trials,
    mark_abandoned_runs,
)
from clnm_kedro.hooks.same_numbers import (
    DEFAULT_TORCH_THREADS,
    TORCH_THREADS_ENV,
    SameNumbersHooks,
    check_blas_kernels,
    torch_threads,
)
from clnm_kedro.hooks.trained_on import (
    SCORED_PATIENTS,
    TRAINING_SPLITS_DATASET,
    TrainedOnHooks,
    warn_on_training_patients,
)
from clnm_kedro.hooks.unfinished_outputs import (
    JOURNAL_NAME,
    PROTECTED_LAYER,
    UnfinishedOutputsHooks,
    output_file,
)

__all__ = [
    "DEFAULT_TORCH_THREADS",
    "END_REASON_TAG",
    "JOURNAL_NAME",
    "LOCK_NAME",
    "LOCK_WAIT_ENV",
    "PROTECTED_LAYER",
    "SCORED_PATIENTS",
    "TAG_PREFIX",
    "TORCH_THREADS_ENV",
    "TRAINING_SPLITS_DATASET",
    "RunLock",
    "RunLockHooks",
    "RunLockedError",
    "RunStatusHooks",
    "SameNumbersHooks",
    "Terminated",
    "TrainedOnHooks",
    "UnfinishedOutputsHooks",
    "check_blas_kernels",
    "fail_stale_optuna_trials",
    "mark_abandoned_runs",
    "output_file",
    "torch_threads",
    "warn_on_training_patients",
]
