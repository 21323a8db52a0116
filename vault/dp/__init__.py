"""Differentially private releases: the only way data leaves the vault.

Recipes for callers (CLI, API, flows)::

    from vault.dp import ReleaseRequest, run_release, preview_release, SegmentRequest, run_segment

``request`` validates against the policy, ``plan`` builds the OpenDP measurement
and its accuracy from public facts only, ``release`` charges the budget and
draws the noise in one transaction with the ledger entry, ``segment`` is DP
k-means on the same machinery, ``export`` writes files and charts.
"""

from vault.dp.plan import Accuracy
from vault.dp.release import ReleaseResult, preview_release, run_release
from vault.dp.request import Measure, ReleaseRequest
from vault.dp.segment import SegmentRequest, run_segment

__all__ = [
    "Accuracy",
    "Measure",
    "ReleaseRequest",
    "ReleaseResult",
    "SegmentRequest",
    "preview_release",
    "run_release",
    "run_segment",
]
