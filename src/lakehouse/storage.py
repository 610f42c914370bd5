"""Where data lives: local paths and object-store URIs behind one interface.

Every layer takes a URI (``/abs/path``, ``relative/path`` or ``s3://bucket/prefix``) and
uses these helpers, so moving the lake to object storage needs no code change.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.fs as pafs

if TYPE_CHECKING:  # deltalake is imported where a Delta table is opened, not by the loader
    import pyarrow as pa
    from deltalake import DeltaTable

_S3_ENV = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN": "AWS_SESSION_TOKEN",
    "AWS_REGION": "AWS_REGION",
    "AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL",
    "AWS_ALLOW_HTTP": "AWS_ALLOW_HTTP",
    # Delta commits on S3 use conditional PUT (If-None-Match). Stores without it: set
    # AWS_CONDITIONAL_PUT=etag or AWS_COPY_IF_NOT_EXISTS=..., or, with one writer only,
    # AWS_S3_ALLOW_UNSAFE_RENAME=true (docs/decisions/0005-object-storage.md)
    "AWS_CONDITIONAL_PUT": "conditional_put",
    "AWS_COPY_IF_NOT_EXISTS": "copy_if_not_exists",
    "AWS_S3_ALLOW_UNSAFE_RENAME": "AWS_S3_ALLOW_UNSAFE_RENAME",
}


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def normalize_uri(uri: str | os.PathLike[str]) -> str:
    """An absolute local path, or the URI unchanged when it names an object store."""
    text = os.fspath(uri)
    if is_remote(text):
        return text.rstrip("/")
    if text.startswith("file://"):
        text = text[len("file://") :]
    return str(Path(text).expanduser().resolve())


def join_uri(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` in one rename: a reader (or a run after a crash) sees
    the old file or the new one, never a half-written one."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(handle, "wb") as sink:
            sink.write(payload)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def storage_options() -> dict[str, str]:
    """Object-store credentials for deltalake, read from the environment (never from files)."""
    return {key: os.environ[env] for env, key in _S3_ENV.items() if os.environ.get(env)}


def filesystem_for(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it for ``uri``."""
    if not is_remote(uri):
        return pafs.LocalFileSystem(), normalize_uri(uri)
    if uri.startswith("s3://"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        fs = pafs.S3FileSystem(
            endpoint_override=endpoint,
            scheme="http" if endpoint and endpoint.startswith("http://") else "https",
            region=os.environ.get("AWS_REGION", "us-east-1"),
        )
        return fs, uri[len("s3://") :]
    return pafs.FileSystem.from_uri(uri)


def delta_exists(uri: str) -> bool:
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(uri, storage_options=storage_options() or None)


def open_delta(uri: str, version: int | None = None) -> DeltaTable:
    """The Delta table at ``uri`` (at ``version``); ``.version()`` is the one way this project
    learns a table's current version."""
    from deltalake import DeltaTable

    return DeltaTable(uri, version=version, storage_options=storage_options() or None)


def read_delta(uri: str, columns: list[str] | None = None, version: int | None = None) -> pa.Table:
    """Read a Delta table into Arrow.

    Goes through a pyarrow dataset on a SubTreeFileSystem rather than
    ``DeltaTable.to_pyarrow_table()``: with deltalake 1.6.6 the latter can abort the
    interpreter at exit (``terminate called without an active exception``).
    """
    table = open_delta(uri, version)
    fs, root = filesystem_for(uri)
    dataset = table.to_pyarrow_dataset(filesystem=pafs.SubTreeFileSystem(root, fs))
    return dataset.to_table(columns=columns)


_ERRNO_MEANING = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "a file would grow past the size this process may write (ulimit -f)",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "the file system is read-only",
}


def _errno(error: BaseException) -> int | None:
    """The errno of a Python OSError, or the ``(os error N)`` deltalake's Rust errors carry."""
    code = getattr(error, "errno", None)
    if code is None:
        found = re.search(r"os error (\d+)", str(error))
        code = int(found.group(1)) if found else None
    return code


def describe_storage_error(error: BaseException) -> str:
    """One readable line for a failed read or write: what happened and where. Understands
    Python's OSError and the ``(os error N)`` that deltalake's Rust errors carry."""
    code = _errno(error)
    meaning = _ERRNO_MEANING.get(code) if code is not None else None
    where = getattr(error, "filename", None)
    text = meaning or getattr(error, "strerror", None) or str(error)
    return f"{text} ({where})" if where else text


# connection failures, timeouts and throttling: worth retrying after a pause; anything else
# (a full disk, permissions, a missing table, bad data) fails the same way again
_TRANSIENT_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.EPIPE,
}
# (object_store prints "retry_timeout" in every error and Delta versions are numbers, so
# neither a bare "timeout" nor a bare 503 means anything here)
_TRANSIENT_TEXT = re.compile(
    r"NETWORK_CONNECTION|could not connect|connection (refused|reset|aborted|closed)"
    r"|timed out|timeout was reached|error sending request|SlowDown|Throttl"
    r"|ServiceUnavailable|Service Unavailable|Bad Gateway|Gateway Timeout"
    r"|RequestTimeout|InternalError",
    re.IGNORECASE,
)


def is_transient(error: BaseException) -> bool:
    """Whether a storage error is worth retrying: the storage could not be reached, timed
    out or asked to slow down (S3's 503 SlowDown). Knows Python's OSErrors and the messages
    of pyarrow's S3 client and deltalake's object store, which carry no errno."""
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    code = _errno(error)
    if code is not None:
        return code in _TRANSIENT_ERRNOS
    return isinstance(error, OSError | _delta_error()) and bool(_TRANSIENT_TEXT.search(str(error)))


def _delta_error() -> type[BaseException]:
    try:
        from deltalake.exceptions import DeltaError
    except ImportError:  # the loader alone does not install deltalake
        return OSError
    return DeltaError


# ---------------------------------------------------------------- conditional writes


class Precondition(Exception):
    """A conditional write refused: the object exists (create), or changed (replace)."""


def _s3_client():
    """boto3's S3 client, configured from the same AWS_* environment as every other read
    and write here (boto3 reads AWS_ENDPOINT_URL, AWS_REGION and the keys itself)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        config=Config(retries={"mode": "standard", "max_attempts": 5}),
    )


def _bucket_key(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri}: conditional writes need an s3:// URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def read_tagged(uri: str) -> tuple[bytes, str] | None:
    """An object's bytes and its ETag (to replace it only if unchanged); None if absent."""
    from botocore.exceptions import ClientError

    bucket, key = _bucket_key(uri)
    try:
        found = _s3_client().get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise OSError(f"cannot read {uri}: {error}") from error
    return found["Body"].read(), found["ETag"]


def put_if(uri: str, data: bytes, *, absent: bool = False, etag: str | None = None) -> None:
    """Write an object only if it does not exist yet (``absent``: S3's If-None-Match: *)
    or only if it is still the version read as ``etag`` (If-Match); :class:`Precondition`
    when another writer got there first. S3, MinIO, R2 and moto honour both headers (as
    Delta's own commits on S3 require)."""
    from botocore.exceptions import ClientError

    bucket, key = _bucket_key(uri)
    condition = {"IfNoneMatch": "*"} if absent else {"IfMatch": etag} if etag else {}
    try:
        _s3_client().put_object(Bucket=bucket, Key=key, Body=data, **condition)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
            raise Precondition(f"{uri}: another writer changed it first") from error
        raise OSError(f"cannot write {uri}: {error}") from error


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs: a temporary file or folder named for a process
    that is gone was abandoned by a writer killed mid-write, and may be removed."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
