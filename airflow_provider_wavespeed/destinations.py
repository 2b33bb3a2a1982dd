"""Where outputs land: a local directory or any ``ObjectStoragePath``, written atomically.

Bytes go to a hidden ``.<name>.<random>.part`` beside the final name and are moved into place
only after the download verified its byte count. A failure removes the part file, so nothing
half-written ever sits under a final name and no temp files are left behind.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit
from urllib.request import url2pathname

from airflow_provider_wavespeed.api.errors import WaveSpeedConfigError


def local_path(location: str) -> Path:
    """A local path or ``file://`` URI (``file:///abs`` and ``file://localhost/abs``) as a Path."""
    if not location.startswith("file://"):
        return Path(location).expanduser()
    parts = urlsplit(location)
    if parts.netloc not in ("", "localhost"):
        raise WaveSpeedConfigError(f"{location!r} names a remote host; use a local path or file:///abs/path")
    return Path(url2pathname(parts.path))


def _part_name(name: str) -> str:
    return f".{name}.{uuid.uuid4().hex[:12]}.part"


class LocalPartFile:
    """A sink that becomes ``final`` on :meth:`commit` (``os.replace``, after fsync)."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.part = final.with_name(_part_name(final.name))
        self._fh: BinaryIO = open(self.part, "wb")  # noqa: SIM115 - closed in commit/abort

    def write(self, data: bytes) -> None:
        self._fh.write(data)

    def restart(self) -> None:
        self._fh.seek(0)
        self._fh.truncate()

    def commit(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.part, self.final)

    def abort(self) -> None:
        self._fh.close()
        self.part.unlink(missing_ok=True)


class ObjectPartFile:
    """The same contract on an ``ObjectStoragePath``: write a part object, then move it into place."""

    def __init__(self, final: Any) -> None:
        self.final = final
        self.part = final.parent / _part_name(final.name)
        self._fh: Any = self.part.open("wb")

    def write(self, data: bytes) -> None:
        self._fh.write(data)

    def restart(self) -> None:
        self._fh.close()
        self._fh = self.part.open("wb")

    def commit(self) -> None:
        self._fh.close()
        self.part.rename(self.final)

    def abort(self) -> None:
        try:
            self._fh.close()
        finally:
            if self.part.exists():
                self.part.unlink()


class Destination:
    """A directory for outputs, given as a local path or an object-storage URI (``s3://conn@bucket/dir``)."""

    def __init__(self, destination: str, conn_id: str | None = None) -> None:
        if not isinstance(destination, str) or not destination.strip():
            raise WaveSpeedConfigError(
                "destination must be a local directory or an object-storage URI such as s3://bucket/dir"
            )
        self.raw = destination.strip()
        self.is_local = "://" not in self.raw or (self.raw.startswith("file://") and conn_id is None)
        self.local: Path | None = None
        self.remote: Any = None
        if self.is_local:
            self.local = local_path(self.raw)
        else:
            from airflow.sdk import ObjectStoragePath

            self.remote = ObjectStoragePath(self.raw, conn_id=conn_id)

    def __str__(self) -> str:
        return self.raw

    def prepare(self) -> None:
        """Create the directory and prove it is writable, before anything is downloaded."""
        try:
            if self.local is not None:
                self.local.mkdir(parents=True, exist_ok=True)
                probe = self.local / _part_name("write-check")
                probe.write_bytes(b"")
                probe.unlink()
            else:
                self.remote.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WaveSpeedConfigError(
                f"destination {self.raw!r} is not writable ({exc.strerror or exc}): choose a directory the "
                "worker can write to, or fix its permissions"
            ) from None

    def uri(self, name: str) -> str:
        if self.local is not None:
            return str(self.local / name)
        return str(self.remote / name)

    def existing_size(self, name: str) -> int | None:
        if self.local is not None:
            path = self.local / name
            return path.stat().st_size if path.is_file() else None
        target = self.remote / name
        return int(target.stat()["size"]) if target.exists() else None

    def open_part(self, name: str) -> LocalPartFile | ObjectPartFile:
        if self.local is not None:
            return LocalPartFile(self.local / name)
        return ObjectPartFile(self.remote / name)
