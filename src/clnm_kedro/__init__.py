"""clnm_kedro: dual-view ultrasound deep learning and clinical heads for occult central lymph
node metastasis (CLNM) in solitary papillary thyroid microcarcinoma."""

__version__ = "0.1.0"
