"""Reading a study directory: one reader, declared column types, every problem collected.

``files`` finds the tables, ``tables`` declares their columns, ``reader`` reads them whole
or in chunks of patients, ``validate`` holds the rules of the data contract, ``problems``
collects row problems and ``policy`` says what a row problem means for a verb.
"""

from .files import is_simulated, study_files
from .reader import (
    NotGrouped,
    StudyChunk,
    StudySource,
    load_study,
    study_from_chunk,
    study_from_frames,
)
from .validate import Study

__all__ = [
    "NotGrouped",
    "Study",
    "StudyChunk",
    "StudySource",
    "is_simulated",
    "load_study",
    "study_files",
    "study_from_chunk",
    "study_from_frames",
]
