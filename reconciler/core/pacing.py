"""Client-side pacing: never ask AWS faster than its token buckets refill.

EC2 throttles each account, Region and API action with its own token bucket (EC2 developer
guide, "Request throttling for the Amazon EC2 API",
https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html): a request takes a
token, a bucket refills at a fixed rate up to its capacity, and a request finding it empty is
refused with ``RequestLimitExceeded`` — a refusal that also spends the bucket every other
tool calling that action in the account shares. A :class:`Pacer` keeps one bucket per
(Region, service, action) for one account's session, at the documented defaults (scaled by
``--api-rate-share``, or as ``settings.api_rates`` says for accounts with raised limits), and
makes each request wait for its token before it is sent. Retries stay for the throttles that
still happen (other tools share the buckets).

Pure apart from the clock and ``sleep``, which are injected (tests use a fake clock).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    """A token bucket: ``burst`` tokens at most, refilled at ``per_second``."""

    burst: float
    per_second: float

    def scaled(self, share: float) -> Rate:
        return Rate(max(1.0, self.burst * share), self.per_second * share)


# EC2 request token limits (the page above, "Request token bucket sizes and refill rates",
# https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html#throttling-limits-rate-based;
# each action has its own bucket): non-mutating actions 100 tokens, refilled at 20 per second;
# mutating actions 50 / 5; and rows of their own for ModifyImageAttribute and
# ModifySnapshotAttribute (100 / 5), CreateTags and DeleteTags (100 / 10). DescribeSnapshots
# is one of the "unfiltered and unpaginated non-mutating actions", whose smaller bucket
# (50 / 10) only takes calls made "without specifying either pagination or a filter": the
# reader's calls name the snapshots they read (200 IDs each) or filter them (the owner's
# encrypted snapshots), so they take the non-mutating bucket.
EC2_NON_MUTATING = Rate(100, 20)
EC2_MUTATING = Rate(50, 5)
EC2_RATES = {
    "ModifyImageAttribute": Rate(100, 5),
    "ModifySnapshotAttribute": Rate(100, 5),
    "CreateTags": Rate(100, 10),
    "DeleteTags": Rate(100, 10),
}
# AWS KMS request quotas, per account and Region, each operation its own (KMS developer
# guide, "Request quotas", https://docs.aws.amazon.com/kms/latest/developerguide/requests-per-second.html).
# Only a rate per second is documented: modelled as a bucket of one second's worth.
KMS_RATES = {
    "DescribeKey": Rate(2000, 2000),
    "GetKeyPolicy": Rate(1000, 1000),
    "PutKeyPolicy": Rate(15, 15),
    "ListAliases": Rate(500, 500),
    "ListKeys": Rate(500, 500),
    "ListGrants": Rate(100, 100),
    # verify's dry run: the cryptographic operations of symmetric keys share one quota,
    # 5,500 per second in the Regions with the lowest default (more elsewhere)
    "GenerateDataKeyWithoutPlaintext": Rate(5500, 5500),
}
# AWS STS: 600 requests per second per account and Region, shared by AssumeRole,
# GetCallerIdentity and four other operations (IAM user guide, "IAM and AWS STS quotas",
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html): one bucket.
STS_RATE = Rate(600, 600)
STS_SHARED = "AssumeRole+GetCallerIdentity"

# The actions the tool sends, each paced: the names `settings.api_rates` may set a rate for
# (another name would be silently ignored). The manifest schema lists the same names.
# verify's consumer-side reads (GetAllowedImagesSettings, the KMS dry run) are among them:
# the rates apply to every account a run calls.
PACED_ACTIONS = frozenset({
    "DescribeImages", "DescribeImageAttribute", "DescribeRegions", "DescribeSnapshots",
    "DescribeSnapshotAttribute", "GetImageBlockPublicAccessState",
    "GetSnapshotBlockPublicAccessState", "ListImagesInRecycleBin", "EnableImageDeprecation",
    "DisableImageDeprecation",
    "ModifyImageAttribute",
    "ModifySnapshotAttribute", "CreateTags", "DeleteTags",
    "DescribeKey", "GetKeyPolicy", "PutKeyPolicy", "ListAliases",
    "GetCallerIdentity", "AssumeRole", "GetAllowedImagesSettings",
    "GenerateDataKeyWithoutPlaintext", "ListGrants",
    # settings.usage_reports and `reconcile usage-reports`
    "DescribeImageUsageReports", "DescribeImageUsageReportEntries", "CreateImageUsageReport",
})

EC2_MUTATING_PREFIXES = ("Modify", "Create", "Delete", "Enable", "Disable", "Reset", "Register",
                         "Deregister", "Put", "Replace", "Cancel", "Copy")


def default_rate(service: str, action: str) -> Rate | None:
    """The documented default bucket for an action; None when it is not paced."""
    if service == "ec2":
        if action in EC2_RATES:
            return EC2_RATES[action]
        return EC2_MUTATING if action.startswith(EC2_MUTATING_PREFIXES) else EC2_NON_MUTATING
    if service == "kms":
        return KMS_RATES.get(action)
    if service == "sts":
        return STS_RATE
    return None


def bucket_action(service: str, action: str) -> str:
    """The bucket an action draws from: its own, but STS operations share one."""
    return STS_SHARED if service == "sts" else action


class TokenBucket:
    """A token bucket whose callers reserve tokens ahead: a caller that finds it empty takes
    the next token to arrive and sleeps until then, so concurrent callers queue in order and
    the bucket is never overdrawn.

    AWS takes a token when a request *arrives*, which the client cannot see; it sees the
    answer, which comes after. Two consequences, both kept on the safe side:

    * A full bucket starts refilling when the first request of a run arrives. Counting from
      the send would credit refill AWS has not had yet: once the bucket leaves full, its
      refill is counted from the first answer to a request of that run (:meth:`settled`),
      or from ``headroom`` seconds after the run's first request if no answer has come.
    * AWS's bucket stops refilling when full, and a request on its way still holds its token
      there: the bucket is never counted above its burst less the requests that have a token
      but no answer yet (``pending``), and a new run starts only when none is pending."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic,
                 headroom: float = 0.0) -> None:
        self.rate = rate
        self._clock = clock
        self._headroom = max(0.0, headroom)
        self._tokens = float(rate.burst)
        self._at = clock()  # refill is counted from here (in the future while a run waits)
        self.run = 0  # runs of requests so far: a run starts when a request finds it full
        self.pending = 0  # tokens taken whose requests have no answer (or failure) yet
        self._lock = threading.Lock()

    def _refill(self) -> float:
        now = self._clock()
        if now > self._at:
            cap = max(0.0, self.rate.burst - self.pending)
            if self._tokens < cap:
                self._tokens = min(cap, self._tokens + (now - self._at) * self.rate.per_second)
            self._at = now
        return now

    def take(self) -> tuple[float, int]:
        """Take a token: the seconds to wait before using it, and the run it belongs to.
        Every token taken is :meth:`settled` once, when its request is answered or fails."""
        with self._lock:
            now = self._refill()
            if self._tokens >= self.rate.burst:  # full, nothing on its way: a new run
                self.run += 1
                self._at = now + self._headroom
            self._tokens -= 1
            self.pending += 1
            if self._tokens >= 0:
                return 0.0, self.run
            return self._at - now - self._tokens / self.rate.per_second, self.run

    def settled(self, run: int, answered: bool) -> None:
        """A request of ``run`` was answered by AWS (its refill started by now), or ended
        without reaching it."""
        with self._lock:
            now = self._refill()
            self.pending = max(0, self.pending - 1)
            if answered and run == self.run and now < self._at:
                self._at = now

    def estimate(self, calls: int) -> float:
        """Seconds ``calls`` more requests take from now at this rate (without taking any)."""
        with self._lock:
            now = self._refill()  # a negative balance is requests already waiting
            if calls <= self._tokens:
                return 0.0
            # a run whose refill is not counted yet (a new run's first answer usually comes
            # well within the headroom: not counted)
            return max(0.0, self._at - now) + (calls - self._tokens) / self.rate.per_second


BucketKey = tuple[str, str, str]  # (Region, service, action)
# Until a run of requests has an answer, the pacer assumes AWS's bucket started refilling
# 0.2 s after the run's first request was sent (threads, network), and at least one token's
# refill later (at most a tenth of the bucket): 4 of DescribeImageAttribute's tokens
# (refilled at 20/s), 1 of ModifyImageAttribute's. An answer usually comes sooner, and then
# counts instead.
HEADROOM_SECONDS = 0.2


def headroom(rate: Rate) -> float:
    """Seconds of :data:`HEADROOM_SECONDS` for ``rate``."""
    return min(max(1.0, HEADROOM_SECONDS * rate.per_second), rate.burst * 0.1) / rate.per_second


@dataclass(frozen=True)
class Ticket:
    """Which bucket and run a request's token came from, for :meth:`Pacer.settled`."""

    key: BucketKey
    run: int


class Pacer:
    """The buckets of one account's session. ``share`` scales every default (0.5 leaves half
    to other tools); ``overrides`` replaces the rate of an action (raised limits)."""

    def __init__(self, share: float = 1.0, overrides: Mapping[str, Rate] | None = None, *,
                 enabled: bool = True, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"the API rate share must be in (0, 1], got {share}")
        self.share = share
        self.overrides = dict(overrides or {})
        self.enabled = enabled
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[BucketKey, TokenBucket] = {}
        self._lock = threading.Lock()
        self.waited = 0.0  # seconds spent waiting for tokens, all threads together
        self.requests = 0

    def rate(self, service: str, action: str) -> Rate | None:
        if action in self.overrides:
            return self.overrides[action]
        base = default_rate(service, action)
        return base.scaled(self.share) if base is not None else None

    def _bucket(self, region: str, service: str, action: str) -> TokenBucket | None:
        key = (region, service, bucket_action(service, action))
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                rate = self.rate(service, action)
                if rate is None:
                    return None
                bucket = self._buckets[key] = TokenBucket(rate, self._clock, headroom(rate))
            return bucket

    def acquire(self, region: str, service: str, action: str) -> Ticket | None:
        """Wait for the token of one request; where it came from (None: not paced). The
        ticket is :meth:`settled` when the request is answered or fails."""
        if not self.enabled:
            return None
        bucket = self._bucket(region, service, action)
        if bucket is None:
            return None
        wait, run = bucket.take()
        ticket = Ticket((region, service, bucket_action(service, action)), run)
        with self._lock:
            self.requests += 1
            self.waited += wait
        if wait > 0:
            try:
                self._sleep(wait)
            except BaseException:  # stopped while waiting: the request is never sent
                bucket.settled(run, answered=False)
                raise
        return ticket

    def settled(self, ticket: Ticket, answered: bool) -> None:
        """The request ``ticket`` was for was answered by AWS, or ended without an answer."""
        with self._lock:
            bucket = self._buckets.get(ticket.key)
        if bucket is not None:
            bucket.settled(ticket.run, answered)

    def estimate(self, calls: Mapping[BucketKey, int]) -> float:
        """Seconds the given requests take at least: buckets refill in parallel, so the
        slowest bucket decides."""
        return self.bottleneck(calls)[0]

    def bottleneck(self, calls: Mapping[BucketKey, int]) -> tuple[float, BucketKey | None]:
        """:meth:`estimate`, and the (Region, service, action) whose bucket decides it."""
        longest: tuple[float, BucketKey | None] = (0.0, None)
        for (region, service, action), n in sorted(calls.items()):
            bucket = self._bucket(region, service, action) if self.enabled else None
            if bucket is not None and n > 0 and bucket.estimate(n) > longest[0]:
                longest = (bucket.estimate(n), (region, service, action))
        return longest


def describe_duration(seconds: float) -> str:
    """``~45 s``, ``~3 min``, ``~1 h 5 min``."""
    if seconds < 90:
        return f"~{max(1, math.ceil(seconds))} s"
    minutes = math.ceil(seconds / 60)
    return f"~{minutes} min" if minutes < 60 else f"~{minutes // 60} h {minutes % 60} min"


ETA_AT_LEAST = 10.0  # seconds: shorter runs need no estimate


def with_eta(label: str, seconds: float) -> str:
    """A progress label with the time the request rate makes the work take, when long."""
    return f"{label} ({describe_duration(seconds)} at the request rate)" \
        if seconds >= ETA_AT_LEAST else label
