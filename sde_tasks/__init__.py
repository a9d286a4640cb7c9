"""sde_tasks: the lm-eval task pack, uniform SDE metrics and `sde score` (imports stay light)."""
