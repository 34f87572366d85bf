"""Hyperparameter search with Optuna (``agentgpt tune``), on one machine or many.

* ``space.py``: the search space, its defaults, and the tune file that narrows it;
* ``storage.py``: where a study lives (SQLite in the runs dir, or a shared database),
  opened with heartbeats so trials of dead workers are failed and retried;
* ``objective.py``: one trial, an ordinary training run that reports deterministic
  evaluations through a training callback and stops when pruned;
* ``study.py``: opening a study, workers, ``best.yaml``, the summary;
* ``report.py``: trial lines, the live table and the final summary.

Importing this package loads neither Optuna nor torch; its modules do (they need the
``tune`` and ``train`` extras).
"""
