"""The study report, per-patient explanations and external validation: what people read.

Pages only: the jobs that log them to MLflow are in :mod:`msc_response.pipelines`.

Numbers apart from drawing apart from HTML:

* :mod:`.intervals`: exact intervals of proportions, t intervals of means.
* :mod:`.paper_view`: the paper's view of a cohort (responders by arm, changes, class shifts,
  Child-Pugh items, the MX1+ course); :mod:`.study_tables`: flow by arm, Table 1, missing
  values, sample size.
* :mod:`.figures`: ``plot_*(..., ax=None)`` drawings of those numbers (nothing global).
* :mod:`.page`: a self-contained HTML page; :mod:`.study_sections`: its sections that
  need only the study; :mod:`.build`: writing a report.
* :mod:`.waterfall`: one patient's explanation (``msc-response explain`` is
  :mod:`msc_response.pipelines.explain`).
"""

from .build import write_study_report

__all__ = ["write_study_report"]
