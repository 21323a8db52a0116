"""Key providers: where the key encryption key (KEK) lives.

A provider wraps and unwraps data keys under a *versioned* KEK; the KEK itself
never leaves the provider's interface, so an external KMS (which never hands out
key material) fits the same protocol. Three providers:

- :class:`FileKeyProvider` (embedded default): ``<home>/kek.json``, mode 0600; we
  refuse to start if group or others can read it.
- :class:`EnvKeyProvider`: ``CIVICVAULT_KEK="1:<base64 key>,2:<base64 key>"``.
- anything implementing :class:`KeyProvider`, e.g. a KMS client (tests use a
  ``FakeKms`` implementing this same protocol).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from vault import _aead
from vault.errors import KeyUnavailable
from vault.home import VaultHome, read_secret_file

KEK_ENV = "CIVICVAULT_KEK"


@runtime_checkable
class KeyProvider(Protocol):
    """What the vault needs from a KEK holder."""

    def current_version(self) -> int: ...

    def versions(self) -> list[int]: ...

    def wrap(self, version: int, key: bytes, context: bytes) -> bytes: ...

    def unwrap(self, version: int, wrapped: bytes, context: bytes) -> bytes: ...

    def new_version(self) -> int:
        """Create a new KEK version and make it current; return its number."""
        ...


class _LocalKeks:
    """Shared logic of providers that hold KEK bytes locally."""

    _keks: dict[int, bytes]
    _current: int

    def current_version(self) -> int:
        return self._current

    def versions(self) -> list[int]:
        return sorted(self._keks)

    def _kek(self, version: int) -> bytes:
        try:
            return self._keks[version]
        except KeyError:
            raise KeyUnavailable(f"KEK version {version} is not held by the key provider") from None

    def wrap(self, version: int, key: bytes, context: bytes) -> bytes:
        return _aead.seal(self._kek(version), key, _aead.associated_data("kek-wrap", version)
                          + context)

    def unwrap(self, version: int, wrapped: bytes, context: bytes) -> bytes:
        try:
            return _aead.open_(self._kek(version), wrapped,
                               _aead.associated_data("kek-wrap", version) + context)
        except _aead.DecryptionFailed:
            raise KeyUnavailable(
                f"a data key does not unwrap under KEK version {version} (wrong KEK or tampered)"
            ) from None


class FileKeyProvider(_LocalKeks):
    """KEK versions in a JSON file with mode 0600."""

    def __init__(self, path: Path) -> None:
        self.path = path
        raw = read_secret_file(path, what="KEK file")
        try:
            doc = json.loads(raw)
            self._keks = {int(v): base64.b64decode(k) for v, k in doc["keks"].items()}
            self._current = int(doc["current"])
        except (ValueError, KeyError, TypeError):
            raise KeyUnavailable(f"KEK file at {path} is malformed") from None
        if self._current not in self._keks or any(
            len(k) != _aead.KEY_BYTES for k in self._keks.values()
        ):
            raise KeyUnavailable(f"KEK file at {path} is malformed")

    @classmethod
    def create(cls, path: Path) -> FileKeyProvider:
        from vault.home import write_secret_file

        write_secret_file(path, cls._dump({1: _aead.random_key()}, 1))
        return cls(path)

    @staticmethod
    def _dump(keks: dict[int, bytes], current: int) -> bytes:
        doc = {
            "format": "civicvault-kek/v1",
            "current": current,
            "keks": {str(v): base64.b64encode(k).decode() for v, k in sorted(keks.items())},
        }
        return json.dumps(doc, indent=1).encode()

    def new_version(self) -> int:
        version = max(self._keks) + 1
        keks = {**self._keks, version: _aead.random_key()}
        tmp = self.path.with_name(self.path.name + ".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, self._dump(keks, version))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self._keks, self._current = keks, version
        return version


class EnvKeyProvider(_LocalKeks):
    """KEK versions from ``CIVICVAULT_KEK`` (``"1:<b64>,2:<b64>"``; highest is current)."""

    def __init__(self, value: str) -> None:
        keks: dict[int, bytes] = {}
        try:
            for item in value.split(","):
                version, b64 = item.strip().split(":", 1)
                keks[int(version)] = base64.b64decode(b64, validate=True)
        except ValueError:
            raise KeyUnavailable(f"{KEK_ENV} is malformed (want '1:<base64>,2:<base64>')") from None
        if not keks or any(len(k) != _aead.KEY_BYTES for k in keks.values()):
            raise KeyUnavailable(f"{KEK_ENV} must hold 32-byte keys")
        self._keks, self._current = keks, max(keks)

    def new_version(self) -> int:
        raise KeyUnavailable(
            f"the environment key provider cannot create KEK versions: add one to {KEK_ENV}"
        )


def provider_for(home: VaultHome) -> KeyProvider:
    """The configured provider: environment if ``CIVICVAULT_KEK`` is set, else the key file."""
    value = os.environ.get(KEK_ENV)
    if value:
        return EnvKeyProvider(value)
    return FileKeyProvider(home.kek_path)
