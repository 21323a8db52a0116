"""Receipts beside results: one published checkpoint, one tlog-proof per ledger entry.

Used by the shells after an operation has committed (release, segment, erase,
reveal): they pass the seq of the entry that records it (and, for ``--out``, the
exported file, whose exact bytes get their own ``release.export`` entry). The
work is the vault service's; this only places the receipts in the output.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flows.output import err_console

if TYPE_CHECKING:
    from vault.service import Vault


def receipts(vault: Vault, seqs: list[int]) -> list[str]:
    """A receipt per entry, all against one freshly published (cosigned) checkpoint."""
    texts, published = vault.receipts(seqs)
    if not published.quorum_met:
        err_console.print(f"warning: the checkpoint was cosigned by {len(published.witnesses)} "
                          f"of the {published.quorum} witnesses the quorum needs; the "
                          "receipt will not verify against that quorum", markup=False,
                          soft_wrap=True)
    return texts


def write_receipt(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def export_with_receipt(vault: Vault, dataset: str, release_seq: int | None,
                        out: Path) -> tuple[str | None, Path]:
    """Ledger ``out``'s bytes, then write ``out.tlog-proof`` and return the release's receipt."""
    from ledger.receipt import SUFFIX

    export_seq = vault.record_export(dataset, release_seq, out)
    seqs = ([release_seq] if release_seq is not None else []) + [export_seq]
    texts = receipts(vault, seqs)
    sidecar = write_receipt(out.with_name(out.name + SUFFIX), texts[-1])
    return (texts[0] if release_seq is not None else None), sidecar
