"""The vault's vocabulary: resource names, ledger actions, lookup entities.

Defined once in :mod:`policies.vocab` (the lowest layer that both the policy
evaluator and the vault import; ``ledger/`` stays independent of it) and offered
here under the vault's name, so service code writes ``from vault import vocab``.
"""

from __future__ import annotations

from policies.vocab import *  # noqa: F403
from policies.vocab import __all__ as __all__
