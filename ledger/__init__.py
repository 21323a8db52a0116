"""The verifiable audit ledger: append-only, hash-chained, RFC 9162 Merkle tree.

Knows nothing of the vault; usable on its own.

- ``canonical``  RFC 8785 encoding of everything hashed or signed
- ``entry``      EntryDraft (what callers give) and Entry (what the log holds)
- ``merkle``     RFC 9162 hashing, proofs and proof verification (pure)
- ``signer``, ``note``, ``checkpoint``   Ed25519 keys, C2SP signed notes, tlog checkpoints
- ``store``      the SQL tables: append in the caller's transaction, group commit, proofs
- ``verify``     pure verification: bytes in, verdict out, ``LedgerTampered(seq=...)``
- ``db_verify``  reads the stored log (on two processes when large) for ``verify``
"""
