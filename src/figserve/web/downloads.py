"""A job's result as a download: whole, or a byte range of it, under the request's
preconditions (``ranges.py``); streamed in windows from the store, never loaded whole."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType

from quart import Response, request
from quart.wrappers.response import ResponseBody
from werkzeug.http import http_date

from ..jobs import OUTPUTS, JobRecord, ResultStream
from .errors import Problem
from .ranges import Part, Unsatisfiable, Validators, precondition, range_applies, select


def download(job: JobRecord, stored: ResultStream) -> Response:
    """The result, whole or a range of it, under the preconditions the request gives (see
    ``ranges.py``); streamed in windows, never loaded whole."""
    size = stored.size
    current = Validators(
        f'"{job.id}-{size}"', int(job.finished) if job.finished is not None else None
    )
    headers = {k.lower(): v for k, v in request.headers.items()}
    validators = {"ETag": current.etag, "Accept-Ranges": "bytes"}
    if job.finished is not None:
        validators["Last-Modified"] = http_date(job.finished)
    status = precondition(headers, current)
    if status == 304:
        return Response(b"", status=304, headers=validators)
    if status == 412:
        raise Problem(412, "Precondition Failed", "The result is not the one you named.")
    wanted = select(headers.get("range"), size)
    if request.method not in {"GET", "HEAD"} or not range_applies(headers, current):
        wanted = select(None, size)
    if isinstance(wanted, Unsatisfiable):
        raise Problem(
            416,
            "Range Not Satisfiable",
            f"The result has {size:,} bytes; no range asked for lies within them.",
            headers={"Content-Range": f"bytes */{size}", **validators},
        )
    begin, end = (wanted.start, wanted.end) if isinstance(wanted, Part) else (0, size)
    resp = Response(_StreamedResult(stored, begin, end), mimetype=OUTPUTS[job.output])
    resp.headers.update(validators)
    resp.content_length = end - begin
    resp.headers["Content-Disposition"] = (
        f'attachment; filename="figserve-{job.id[:8]}.{job.output}"'
    )
    if isinstance(wanted, Part):
        resp.status_code = 206
        resp.headers["Content-Range"] = f"bytes {begin}-{end - 1}/{size}"
    return resp  # Cache-Control: no-store, as every job response (one client's only)


class _StreamedResult(ResponseBody):
    """A job's result (or a range of it) as a response body, streamed in windows."""

    def __init__(self, stored: ResultStream, begin: int, end: int) -> None:
        self.stored = stored
        self.begin = begin
        self.end = end
        self._chunks: AsyncIterator[bytes] | None = None

    async def __aenter__(self) -> AsyncIterator[bytes]:
        self._chunks = self.stored.chunks(self.begin, self.end)
        return self._chunks

    async def __aexit__(
        self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._chunks is not None and hasattr(self._chunks, "aclose"):
            await self._chunks.aclose()

    async def make_conditional(self, begin: int, end: int | None) -> int:
        raise NotImplementedError("ranges are answered by _download")
