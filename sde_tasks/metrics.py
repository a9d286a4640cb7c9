"""Kept for lm-eval task folders written by `sde eval make-task` before the metric formulas moved to
sde_datagen.metrics: their utils.py imports its aggregations from here. `make-task --overwrite` rewrites such a
folder to ask the task's family instead."""
from sde_datagen.metrics import accuracy, exact_match, f1, format_error_rate, precision, recall  # noqa: F401
