"""Types of vault/_sealc.c (private to vault._aead)."""

from collections.abc import Sequence
from typing import Any

import numpy as np

def hmac_sha256(key: bytes, prefix: bytes, messages: Sequence[bytes | None],
                out_len: int) -> list[bytes | None]: ...
def gcm_seal(keys: bytes, nonces: bytes, plaintexts: Sequence[bytes], ad_head: bytes,
             ad_ints: Sequence[np.ndarray[Any, np.dtype[np.int64]]],
             ad_tail: bytes) -> list[bytes]: ...
def sha256_framed(head: bytes, tag: bytes, blobs: Sequence[bytes]) -> bytes: ...
def crc32_pieces(text: bytes, sep: int) -> bytes: ...
def text_rows(ints: np.ndarray[Any, np.dtype[np.int64]], middles: Sequence[bytes],
              codes: np.ndarray[Any, np.dtype[np.int64]] | None, data: Any,
              offsets: np.ndarray[Any, np.dtype[np.int64]] | None) -> tuple[bytes, bytes]: ...
