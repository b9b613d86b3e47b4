"""The one feature builder: a config and a study to a feature table, its patient flow and outputs.

Everything lives in :mod:`.build`; the names other layers use are re-exported here.
"""

from .build import (
    EXCLUSION_COLUMNS,
    FeatureSet,
    build_features,
    check_feature_outputs,
    features_from_study,
    flow_of_counts,
    patient_flow,
    pick_values,
    sidecar,
    slug,
    write_feature_set,
    write_problems,
)

__all__ = [
    "EXCLUSION_COLUMNS",
    "FeatureSet",
    "build_features",
    "check_feature_outputs",
    "features_from_study",
    "flow_of_counts",
    "patient_flow",
    "pick_values",
    "sidecar",
    "slug",
    "write_feature_set",
    "write_problems",
]
