"""Apply: a plan's operations written to AWS, in the order the README's "Apply order" gives.

- :mod:`.executor`: :class:`Applier` runs the writes phase by phase, isolates failures,
  tracks the calls in flight and settles a stopped run;
- :mod:`.writes`: what each AWS write call is, which operations it carries, and how many
  calls a plan makes (:func:`write_calls`, for estimates);
- :mod:`.tags`: the ownership tags written after the operations (:func:`write_tags`);
- :mod:`.deprecation`: retired builds deprecated before them (:func:`deprecate`);
- :mod:`.jsonlog`: ``--log-file`` (:class:`JsonLog`).
"""

from .deprecation import DeprecationReport, deprecate
from .executor import Applier, ApplyReport, Outcome, Result
from .jsonlog import JsonLog
from .tags import TagReport, write_tags
from .writes import write_calls

__all__ = [
    "Applier",
    "ApplyReport",
    "DeprecationReport",
    "JsonLog",
    "Outcome",
    "Result",
    "deprecate",
    "TagReport",
    "write_calls",
    "write_tags",
]
