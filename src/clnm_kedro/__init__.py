"""clnm_kedro: dual-view ultrasound deep learning and clinical heads for occult central lymph
node metastasis (CLNM) in solitary papillary thyroid microcarcinoma.

Importing the package pins the CPU kernels' instruction set to AVX2 (see
:data:`CPU_KERNEL_PINS`) so that a run gives the same numbers on any x86-64 machine with AVX2,
whatever wider instructions (AVX-512, AMX) it also has. These variables are read when PyTorch
and MKL load, so they are set here, before anything imports torch (OpenBLAS's, read when NumPy
loads, is exported by the Makefile). Each is only a default: a
value already in the environment wins, and ``CLNM_PIN_CPU_KERNELS=0`` sets none of them (the
fastest kernels of the machine, and numbers that may differ in the last bits from another
machine's). See docs/reproducibility.md.
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# Instruction set of the CPU kernels, as each library names it.
CPU_KERNEL_PINS = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN convolutions (PyTorch on the CPU)
    "ATEN_CPU_CAPABILITY": "avx2",  # PyTorch's own vectorised kernels
    "MKL_CBWR": "AVX2",  # MKL (PyTorch's matrix products): conditional numerical reproducibility
    # OpenBLAS (NumPy, SciPy, scikit-learn: the heads). Read when NumPy loads, which `kedro`
    # does before it imports this package: the Makefile exports it; a run started otherwise
    # warns when OpenBLAS chose wider kernels (clnm_kedro.hooks.SameNumbersHooks).
    "OPENBLAS_CORETYPE": "Haswell",
}
PIN_SWITCH = "CLNM_PIN_CPU_KERNELS"

if _os.environ.get(PIN_SWITCH, "1").strip() not in ("0", "false", "no"):
    for _name, _value in CPU_KERNEL_PINS.items():
        _os.environ.setdefault(_name, _value)
    if "torch" in _sys.modules:  # too late for this process: say so rather than pretend
        import warnings as _warnings

        _warnings.warn(
            "torch was imported before clnm_kedro: the CPU kernel pins "
            f"({', '.join(CPU_KERNEL_PINS)}) may not apply in this process; set them in the "
            "environment to be sure.",
            RuntimeWarning,
            stacklevel=2,
        )
