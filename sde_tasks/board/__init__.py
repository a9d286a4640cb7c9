"""The leaderboard: validated lm-eval submissions -> markdown tables, plots and a static page.

Layout of a board folder (the repository's is `leaderboards/`):
    submissions/<id>/submission.json     who evaluated what (schema: submission.schema.json)
    submissions/<id>/results.json        lm-eval's results_*.json, unchanged
    submissions/<id>/samples_<task>.jsonl  lm-eval's --log_samples output, unchanged
    README.md                            tables between the board markers (written by `sde board build`)
    site/index.html + site/*.png         the static page
"""
