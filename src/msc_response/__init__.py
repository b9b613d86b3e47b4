"""msc-response: predict response to mesenchymal stromal cell therapy in decompensated cirrhosis.

The public API is re-exported here; modules hold one stage of the data's path each
(see ``shared/docs/architecture.md``).
"""

from .errors import ConfigError, DataError, MscResponseWarning, Problem
from .scores import child_pugh, child_pugh_class, meld, meld3, meld_na, round_half_up
from .units import convert

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "MscResponseWarning",
    "Problem",
    "__version__",
    "child_pugh",
    "child_pugh_class",
    "convert",
    "meld",
    "meld3",
    "meld_na",
    "round_half_up",
]
