"""The one error tree of modelvc.

    ModelvcError                      exit 1, HTTP 500
    ├── UsageError                    exit 2, HTTP 400
    │   ├── InvalidName               bad model / branch / channel / tag name
    │   ├── InvalidRef                malformed ref syntax
    │   └── InvalidModelFile          a file that claims a format it does not follow
    ├── NotFound                      exit 3, HTTP 404
    │   ├── RegistryNotFound
    │   ├── PathNotFound
    │   ├── ModelNotFound
    │   ├── RefNotFound
    │   └── ObjectNotFound
    ├── AmbiguousRef                  exit 4, HTTP 409
    ├── Conflict                      exit 5, HTTP 409
    │   ├── RefMoved                  compare-and-swap lost: the ref moved under you
    │   ├── AlreadyExists
    │   └── Locked
    ├── Corrupt                       exit 6, HTTP 500
    │   ├── CorruptObject
    │   ├── UnsupportedFormat         repository format newer than this modelvc
    │   └── SignatureInvalid          a signature does not verify (tampering)
    ├── StorageError                  exit 7, HTTP 507
    │   └── DiskFull
    └── PermissionDenied              exit 8, HTTP 403
        ├── Unauthenticated           HTTP 401: no token, or a bad/expired/revoked one
        └── Untrusted                 no valid signature by a trusted key

Each class's docstring is its default message; `str(err)` gives the specific one.
Lower-layer errors (OSError, SQLAlchemy, botocore) are translated at the boundary
with ``raise ... from exc``.
"""

from __future__ import annotations

# What to do after a transfer (push, pull, clone; a remote commit's uploads) was cut
# short, whichever end or signal cut it: one wording (docs/transfer.md). Errors that
# say it are `resumable` (`"resumable": true` in --json output).
RESUME_HINT = "run the same command again: it resumes from what already arrived"
UNREACHABLE_RESUME_HINT = "is the server up? then " + RESUME_HINT
# A server this command never reached: nothing arrived, and the address may be wrong.
NEVER_REACHED_HINT = ("check the URL (`modelvc remote list` shows the named ones) and that "
                      "`modelvc server` runs there, then run the command again")


class ModelvcError(Exception):
    """modelvc failed."""

    exit_code = 1
    http_status = 500

    def __init__(self, message: str | None = None, *, hint: str | None = None,
                 resumable: bool = False) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.hint = hint
        # Cut short mid-transfer: the same command, run again, resumes (RESUME_HINT)
        self.resumable = resumable
        super().__init__(self.message)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\nhint: {self.hint}"
        return self.message

    @property
    def code(self) -> str:
        """Stable machine-readable name, used in --json output and HTTP bodies."""
        return type(self).__name__


class UsageError(ModelvcError):
    """The command was called the wrong way."""

    exit_code = 2
    http_status = 400


class InvalidName(UsageError):
    """Invalid name: use letters, digits, '.', '_' and '-' (no path separators)."""


class InvalidRef(UsageError):
    """Invalid ref: write NAME, NAME@vN, NAME@branch, NAME@channel, NAME@tag or NAME@<id>."""


class InvalidModelFile(UsageError):
    """The model file is malformed."""


class TooLarge(UsageError):
    """The request is larger than this registry or gateway accepts."""

    http_status = 413


class BodyTimeout(UsageError):
    """The request body stopped arriving before it was complete."""

    http_status = 408


class NotFound(ModelvcError):
    """Not found."""

    exit_code = 3
    http_status = 404


class RegistryNotFound(NotFound):
    """No modelvc registry here: run `modelvc init` or pass --registry / MODELVC_REGISTRY."""


class PathNotFound(NotFound):
    """The path does not exist."""


class ModelNotFound(NotFound):
    """No such model."""


class RefNotFound(NotFound):
    """No such version, branch, channel or tag."""


class ObjectNotFound(NotFound):
    """An object is missing from the store: run `modelvc verify`."""


class AmbiguousRef(ModelvcError):
    """The ref matches more than one version or ref: give more characters or NAME@vN."""

    exit_code = 4
    http_status = 409


class Conflict(ModelvcError):
    """The registry changed under you."""

    exit_code = 5
    http_status = 409


class RefMoved(Conflict):
    """The ref moved under you (another writer was first): re-read it and retry."""


class AlreadyExists(Conflict):
    """It already exists."""


class Locked(Conflict):
    """Another process holds the lock: wait for it to finish and retry."""


class SessionMoved(Conflict):
    """The upload session does not hold what the sender expected."""

    def __init__(self, message: str | None = None, *, held: int = 0,
                 hint: str | None = None) -> None:
        super().__init__(message or f"the receiver holds {held} bytes of this upload",
                         hint=hint or "ask the receiver for its offset and send from there")
        self.held = held


class Corrupt(ModelvcError):
    """The registry holds corrupt data: run `modelvc verify`."""

    exit_code = 6
    http_status = 500


class CorruptObject(Corrupt):
    """A stored object does not match its id: run `modelvc verify` to see what it breaks."""


class DamagedUpload(CorruptObject):
    """Bytes the client sent do not match their id (damaged in transit, or not what the
    client said they are): the client's to resend, so a 4xx."""

    http_status = 400


class ChunkRefused(DamagedUpload):
    """An upload chunk did not match its digest (damaged in transit); it was not kept."""


class UnsupportedFormat(Corrupt):
    """The registry was written by a newer modelvc: upgrade modelvc to open it."""


class StorageError(ModelvcError):
    """The storage backend failed."""

    exit_code = 7
    http_status = 507


class DiskFull(StorageError):
    """No space left on the device: free some space (or run `modelvc gc`) and retry."""


class PermissionDenied(ModelvcError):
    """You are not allowed to do that."""

    exit_code = 8
    http_status = 403


class Unauthenticated(PermissionDenied):
    """Authentication required: set MODELVC_TOKEN to an API token (push, pull and clone
    also take --token; HTTP: `Authorization: Bearer ...`); an admin creates one with
    `modelvc token create`."""

    http_status = 401


class SignatureInvalid(Corrupt):
    """A signature does not verify: the version, its manifest or the signature was altered;
    re-sign from a trusted copy (`modelvc sign`) after finding out why."""


class SignatureRefused(SignatureInvalid):
    """A signature the client sent does not parse or does not verify: the client's to
    fix (re-sign, or send the bundle `modelvc sign` wrote), so a 4xx, not the 500 that
    a stored signature failing means."""

    http_status = 400


class Untrusted(PermissionDenied):
    """The version has no valid signature by a key the trust policy accepts: sign it with
    `modelvc sign REF --key KEYFILE` using a trusted key, or change the policy's `trust`."""


class InvalidPolicy(UsageError):
    """The policy file is invalid: fix the line named and apply it again."""


class GateNotPassed(Conflict):
    """The version has not passed the channel's gates: run `modelvc gate run REF --channel CH`."""
