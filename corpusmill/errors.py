"""Errors a user can act on. Each message names what is wrong and how to fix it."""


class JobError(Exception):
    """A job that cannot run as specified (spec, input, model or output). Raised before any Ray
    work; the CLI prints the message and exits with status 2."""


class RowError(Exception):
    """One row cannot be processed (null text, a failing forward pass). Handled by `on_error`."""


# What object stores answer (pyarrow's and boto3's wording), and what the user can do about it.
_STORE_PROBLEMS = (
    (("NO_SUCH_BUCKET", "NoSuchBucket", "bucket does not exist"),
     "the bucket does not exist: create it, or correct the path"),
    (("INVALID_ACCESS_KEY_ID", "InvalidAccessKeyId", "SIGNATURE_DOES_NOT_MATCH",
      "SignatureDoesNotMatch", "EXPIRED_TOKEN", "ExpiredToken", "INVALID_CLIENT_TOKEN_ID",
      "Unable to locate credentials", "NoCredentialsError"),
     "the object store refused the credentials: check the standard AWS credential chain "
     "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the instance role) on every "
     "machine that runs the job"),
    (("ACCESS_DENIED", "AccessDenied", "Access Denied", "FORBIDDEN"),
     "access denied: the credentials in use may not {doing} it; grant them s3:ListBucket and "
     "s3:GetObject on inputs and models, and s3:PutObject and s3:DeleteObject on the output"),
    (("NETWORK_CONNECTION", "Could not connect", "Connection refused", "couldn't connect",
      "EndpointConnectionError", "Could not resolve host"),
     "the object store could not be reached: check the network and AWS_ENDPOINT_URL (for an "
     "S3-compatible store)"),
)


def storage_error(path: str, error: BaseException, doing: str) -> "JobError | None":
    """A JobError naming `path` and the fix, for an object-store failure while `doing` (read,
    list, write) it; None when `error` is not one we recognise. Messages quote the store's own
    wording, which never includes the credentials."""
    text = str(error)
    for markers, fix in _STORE_PROBLEMS:
        if any(marker in text for marker in markers):
            return JobError(f"cannot {doing} {path!r}: {fix.format(doing=doing)} (the store "
                            f"said: {_first_line(text)})")
    return None


def _first_line(text: str, limit: int = 240) -> str:
    line = text.strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= limit else line[:limit - 3] + "..."
