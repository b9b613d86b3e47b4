"""MLflow's corner: logging and registering a trained model, loading a registered one.

* :mod:`.registration`: :func:`~.registration.log_and_register` (the run, the model, the
  registry, the promotion gate's aliases).
* :mod:`.load`: :func:`~.load.load_model` (a version's own artifacts, without the pyfunc).
* :mod:`.pyfunc_model`: the MLflow pyfunc, logged as "model from code".
"""
