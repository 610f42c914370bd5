"""The job's clock (``--as-of``): for freshness, future-timestamp quarantine and people,
never a cursor. A clock later than the machine's is almost always a typo (2062 for 2026)
and would make every row look stale or the gate's freshness meaningless, so it is refused
unless explicitly allowed. Past clocks replay a past night and are always allowed.

A leaf module (standard library only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# how far ahead of this machine's clock an --as-of may be (clocks of two machines differ)
FUTURE_TOLERANCE = timedelta(minutes=5)


class ClockError(ValueError):
    """An ``as_of`` the job refuses; the message is one line naming the fix."""


def check_as_of(
    as_of: datetime | None, *, allow_future: bool = False, now: datetime | None = None
) -> datetime | None:
    """``as_of`` itself, when it is not later than now plus :data:`FUTURE_TOLERANCE`."""
    if as_of is None or allow_future:
        return as_of
    if as_of.tzinfo is None:
        raise ClockError(f"as_of {as_of.isoformat()} has no time zone; give one, e.g. +00:00")
    now = now or datetime.now(UTC)
    if as_of > now + FUTURE_TOLERANCE:
        raise ClockError(
            f"as_of {as_of.isoformat()} is {_ahead(as_of - now)} ahead of this machine's clock "
            f"({now.isoformat(timespec='seconds')}); a typo? Pass --allow-future-as-of "
            "(allow_future_as_of=True) if the future is really meant"
        )
    return as_of


def _ahead(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:,.1f} days" if days >= 1 else f"{delta.total_seconds() / 60:,.0f} minutes"
