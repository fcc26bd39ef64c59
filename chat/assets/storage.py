"""Where uploaded files' bytes live: one ``Storage`` protocol, two real backends.

- ``DiskStorage``: files under a directory (``ASSET_DIR``, ``instance/assets`` by default),
  the embedded default: nothing to set up.
- ``S3Storage``: any S3-compatible object store through boto3, configured by
  ``S3_ENDPOINT_URL``, ``S3_BUCKET``, ``S3_ACCESS_KEY_ID`` and ``S3_SECRET_ACCESS_KEY``
  (``config.asset_settings`` refuses half of them). The bucket must exist.

``build_storage`` picks one from the configuration; nothing else asks which. Keys are made by
``chat.assets.service`` from random tokens (``[A-Za-z0-9_-]`` and ``/``), never from a name a
client chose. Every call here is network or disk I/O: never make one with a database
transaction open.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK = 64 * 1024


class ObjectMissing(Exception):
    """The object is not (or no longer) in the store."""


class StorageUnavailable(Exception):
    """The store could not be reached or refused the call (down, misconfigured, full)."""


class Storage(Protocol):
    """What the service needs of an object store."""

    def put(self, key: str, source: BinaryIO, size: int, content_type: str) -> None:
        """Store ``size`` bytes read from ``source`` (at its start) under ``key``."""

    def read(self, key: str, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """The bytes of ``key`` from ``start`` up to ``stop`` (exclusive; None: the end), in
        chunks. Raises ``ObjectMissing`` before yielding anything when there is no such key."""

    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key succeeds."""

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""


class DiskStorage:
    """Files in a directory tree; a put is written to a temporary file and renamed into
    place, so a reader never sees half a file."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"not a storage key: {key!r}")
        return self.root / key

    def put(self, key: str, source: BinaryIO, size: int, content_type: str) -> None:
        path = self._path(key)
        source.seek(0)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"cannot write under {self.root}: {exc.strerror}") from exc
        try:
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        except OSError as exc:
            raise StorageUnavailable(f"cannot write under {self.root}: {exc.strerror}") from exc
        try:
            with os.fdopen(handle, "wb") as out:
                while chunk := source.read(CHUNK):
                    out.write(chunk)
            os.replace(temporary, path)
        except OSError as exc:  # a full or read-only disk
            Path(temporary).unlink(missing_ok=True)
            raise StorageUnavailable(f"cannot write under {self.root}: {exc.strerror}") from exc
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def read(self, key: str, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        try:
            handle = open(self._path(key), "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError:
            raise ObjectMissing(key) from None
        return _chunks_of(handle, start, stop)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()


def _chunks_of(handle: BinaryIO, start: int, stop: int | None) -> Iterator[bytes]:
    with handle:
        handle.seek(start)
        left = None if stop is None else stop - start
        while left is None or left > 0:
            chunk = handle.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk


class S3Storage:
    """An S3-compatible bucket through boto3. Each process makes its own client on first use
    (a client must not cross a fork: gunicorn and Celery fork after loading the app)."""

    def __init__(
        self,
        endpoint_url: str,
        bucket: str,
        access_key_id: str,
        secret_access_key: str,
        region: str = "us-east-1",
    ):
        self.endpoint_url = endpoint_url
        self.bucket = bucket
        self._credentials = (access_key_id, secret_access_key)
        self.region = region
        self._client = None
        self._client_pid = None
        self._lock = threading.Lock()

    @property
    def client(self):
        if self._client is None or self._client_pid != os.getpid():
            with self._lock:
                if self._client is None or self._client_pid != os.getpid():
                    # boto3 is imported by the processes that use the object store only: it
                    # cost every web and Celery process 0.16 s of CPU at start-up.
                    import boto3  # noqa: PLC0415
                    from botocore.config import Config  # noqa: PLC0415

                    self._client = boto3.client(
                        "s3",
                        endpoint_url=self.endpoint_url,
                        region_name=self.region,
                        aws_access_key_id=self._credentials[0],
                        aws_secret_access_key=self._credentials[1],
                        config=Config(
                            signature_version="s3v4",
                            s3={"addressing_style": "path"},
                            connect_timeout=5,
                            read_timeout=60,
                            retries={"max_attempts": 3, "mode": "standard"},
                        ),
                    )
                    self._client_pid = os.getpid()
        return self._client

    def put(self, key: str, source: BinaryIO, size: int, content_type: str) -> None:
        source.seek(0)
        # Multipart in 8 MiB parts from the spooled upload, one part in memory at a time; no
        # threads of its own (a gevent worker's greenlets are its concurrency).
        from boto3.s3.transfer import TransferConfig  # noqa: PLC0415 (as in ``client``)

        with _unavailable_on_failure("put"):
            self.client.upload_fileobj(
                source,
                self.bucket,
                key,
                ExtraArgs={"ContentType": content_type},
                Config=TransferConfig(use_threads=False),
            )

    def read(self, key: str, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        extra = {}
        if start or stop is not None:
            extra["Range"] = f"bytes={start}-{'' if stop is None else stop - 1}"
        with _unavailable_on_failure("get", missing=key):
            body = self.client.get_object(Bucket=self.bucket, Key=key, **extra)["Body"]
        return _body_chunks(body)

    def delete(self, key: str) -> None:
        with _unavailable_on_failure("delete"):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def exists(self, key: str) -> bool:
        try:
            with _unavailable_on_failure("head", missing=key):
                self.client.head_object(Bucket=self.bucket, Key=key)
        except ObjectMissing:
            return False
        return True


MISSING_CODES = ("NoSuchKey", "404", "NotFound")


@contextlib.contextmanager
def _unavailable_on_failure(call: str, missing: str | None = None):
    """boto3's failures as ours: a missing key (when ``missing`` names it) is
    ``ObjectMissing``; anything else the store or the network says is ``StorageUnavailable``."""
    # Only ever entered by S3Storage, whose client has imported boto3 already.
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if missing is not None and code in MISSING_CODES:
            raise ObjectMissing(missing) from None
        raise StorageUnavailable(f"object store refused {call}: {code}") from exc
    except BotoCoreError as exc:
        raise StorageUnavailable(f"object store unreachable ({call}): {exc.__class__.__name__}") from exc


def _body_chunks(body) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK)
    finally:
        body.close()


def build_storage(config: Mapping) -> Storage:
    """The configured backend: S3 when its settings are given, else the local directory."""
    if config.get("S3_BUCKET"):
        return S3Storage(
            config["S3_ENDPOINT_URL"],
            config["S3_BUCKET"],
            config["S3_ACCESS_KEY_ID"],
            config["S3_SECRET_ACCESS_KEY"],
            config.get("S3_REGION") or "us-east-1",
        )
    return DiskStorage(config["ASSET_DIR"])
