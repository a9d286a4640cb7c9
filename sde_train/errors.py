"""Errors a user can act on. sde_train imports no sibling package, so it has its own class."""
from __future__ import annotations


class TrainError(Exception):
    """Bad input (flag, config file, dataset, model): printed as one line, without a traceback."""
