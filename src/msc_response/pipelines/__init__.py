"""The jobs over the in-memory API (MLflow lives here and in :mod:`msc_response.registry`).

:mod:`.train`, :mod:`.report` (a training run's page), :mod:`.validate` (external
validation), :mod:`.explain` (one patient), :mod:`.score` (the batch scoring job).
"""
