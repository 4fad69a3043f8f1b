"""The AWS Lambda entry point, ``reconciler.cli.aws_lambda.handler``: each EventBridge event
it is given goes through exactly what ``reconcile event MANIFEST -`` does on the command
line (the same click command, in-process), with the manifest bundled with the function.

- The event comes directly from an EventBridge rule, or (as ``examples/event-driven/``
  deploys it) in an SQS batch: one record per event, its body the event. A record whose
  run fails (exit 1) is reported in ``batchItemFailures``, so SQS retries it and, after
  its ``maxReceiveCount``, moves it to the dead-letter queue; a record whose event cannot
  be read is logged and dropped (a retry would fail the same way). No exception is
  raised, so the log never holds a traceback.
- Every line the command prints becomes one JSON log line (``level``, ``message``,
  ``stream``, the event's ``id`` and the invocation's request ID), then one line with the
  exit code and what it means.
- Environment: ``RECONCILE_MANIFEST`` (default ``amis.yaml`` in the function's code folder,
  ``LAMBDA_TASK_ROOT``), ``RECONCILE_DETECT_ONLY=1`` (report drift, write nothing),
  ``RECONCILE_OWN_ACTORS`` (the function's own role session: its writes' events are
  ignored), and the usual AWS settings (``AWS_RETRY_MODE``, ``RECONCILE_API_RATE_SHARE``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

from ..core.errors import EXIT_CHANGES, EXIT_ERROR, EXIT_OK
from ..shell.concurrency import Stop

OUTCOMES = {EXIT_OK: "done (applied, nothing to do, or ignored)",
            EXIT_CHANGES: "drift found (detect-only: nothing written)",
            EXIT_ERROR: "failed"}


def manifest_path() -> str:
    """The manifest bundled with the function."""
    return os.environ.get("RECONCILE_MANIFEST") or os.path.join(
        os.environ.get("LAMBDA_TASK_ROOT", "."), "amis.yaml")


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Lambda's handler: one event, or an SQS batch of them."""
    request = str(getattr(context, "aws_request_id", "") or "")
    records = event.get("Records") if isinstance(event, dict) else None
    if isinstance(records, list) and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs"
                                         for r in records):
        failures = []
        for record in records:
            body = record.get("body")
            body = body if isinstance(body, str) else ""
            code = run_one(body, request, str(record.get("messageId", "")))
            if code == EXIT_ERROR and _retry_can_help(body):
                failures.append({"itemIdentifier": str(record.get("messageId", ""))})
        return {"batchItemFailures": failures}
    return {"exit_code": run_one(json.dumps(event), request)}


def run_one(body: str, request: str = "", message: str = "") -> int:
    """``reconcile event MANIFEST -`` with ``body`` on standard input; its output as JSON
    log lines."""
    from . import _run

    args = ["event", manifest_path(), "-"]
    if os.environ.get("RECONCILE_DETECT_ONLY", "") in ("1", "true", "yes"):
        args.append("--detect-only")
    context = {"event_id": _event_id(body), "aws_request_id": request, "message_id": message}
    log = sys.stdout  # the function's log; the command's own output is captured
    out, err = io.StringIO(), io.StringIO()
    try:
        with _standard_streams(body, out, err):
            code = _run(args, Stop())
    except BaseException as exc:  # never a traceback, whatever happened
        code = EXIT_ERROR
        err.write(f"error: internal error: {type(exc).__name__}: {' '.join(str(exc).split())}\n")
    for stream, text in (("stdout", out.getvalue()), ("stderr", err.getvalue())):
        for line in text.splitlines():
            if line.strip():
                level = "error" if line.startswith(("error", "internal error")) else "info"
                _log(log, level, line, stream, context)
    _log(log, "error" if code == EXIT_ERROR else "info",
         f"exit {code}: {OUTCOMES.get(code, '')}", "result", {**context, "exit_code": code})
    return code


@contextlib.contextmanager
def _standard_streams(body: str, out: io.StringIO, err: io.StringIO) -> Iterator[None]:
    """The command's stdin (the event), stdout and stderr, for the time of one run."""
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin = io.TextIOWrapper(io.BytesIO(body.encode("utf-8")), encoding="utf-8")
    sys.stdout, sys.stderr = out, err
    try:
        yield
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved


def _retry_can_help(body: str) -> bool:
    """Whether a failed record is worth SQS's retries: not when the event itself cannot be
    read (a malformed event fails the same way every time; it is logged, then dropped)."""
    from ..core.errors import InputError
    from ..core.events import parse_event

    try:
        parse_event(body.encode("utf-8"), "event")
    except InputError:
        return False
    return True


def _event_id(body: str) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    return str(doc.get("id", "")) if isinstance(doc, dict) else ""


def _log(to: TextIO, level: str, message: str, stream: str, context: Mapping[str, Any]) -> None:
    """One JSON log line on the function's standard output (CloudWatch Logs)."""
    line = {"level": level, "message": message, "stream": stream,
            **{k: v for k, v in context.items() if v != ""}}
    with contextlib.suppress(OSError, ValueError):
        print(json.dumps(line, ensure_ascii=True), file=to, flush=True)
