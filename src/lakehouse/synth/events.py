"""Interaction logs for one day: who engaged with which photo, when, and how.

Engagement with a photo decays after posting (most of it in the first two days, a long
tail after), scales with the photo's appeal, and follows the diurnal and weekly rhythm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lakehouse.contracts import event_types
from lakehouse.synth.world import SECONDS_PER_DAY, Photos, Users, diurnal_seconds

EVENT_TYPE_P = np.array([0.72, 0.16, 0.03, 0.03, 0.04, 0.02])
COMMENTS = (
    "love this! 😍",
    "¡Qué bonito!",
    "すごい!",
    "Where is this?",
    "amazing shot 🔥",
    "so cute",
    "Que lindo ❤️",
    "need this in my life",
    "wow",
    "tag me next time @{name}",
)


@dataclass
class DayEvents:
    ts_us: np.ndarray  # microseconds since epoch, UTC, sorted
    event_type: np.ndarray  # index into contracts.event_types()
    user: np.ndarray  # user index
    photo: np.ndarray  # photo index
    dwell_ms: np.ndarray  # -1 = none
    comment: np.ndarray  # index into COMMENTS, -1 = none


def day_events(
    rng: np.random.Generator, users: Users, photos: Photos, day_start_s: int, n_events: int
) -> DayEvents:
    day_end_s = day_start_s + SECONDS_PER_DAY
    live = np.flatnonzero(photos.posted_s < day_end_s)
    if live.size == 0 or n_events == 0:
        empty = np.zeros(0, dtype=np.int64)
        return DayEvents(empty, empty, empty, empty, empty, empty)
    age_days = (day_start_s + SECONDS_PER_DAY / 2 - photos.posted_s[live]) / SECONDS_PER_DAY
    age_days = np.maximum(age_days, 0.0)
    decay = np.exp(-age_days / 1.5) + 0.03 * np.exp(-age_days / 20.0)
    open_fraction = np.clip((day_end_s - photos.posted_s[live]) / SECONDS_PER_DAY, 0.0, 1.0)
    weight = np.exp(photos.appeal[live]) * decay * open_fraction
    counts = rng.multinomial(n_events, weight / weight.sum())
    photo = np.repeat(live, counts)
    n = photo.size

    ts_s = day_start_s + diurnal_seconds(rng, n)
    posted = photos.posted_s[photo]
    early = ts_s <= posted  # a photo posted today is only seen after it was posted
    ts_s = np.where(early, posted + 1 + (rng.random(n) * (day_end_s - 1 - posted)), ts_s)
    ts_us = ts_s.astype(np.int64) * 1_000_000 + rng.integers(0, 1_000_000, n)

    cumulative = np.cumsum(users.activity)
    user = np.searchsorted(cumulative, rng.random(n) * cumulative[-1])
    not_yet = users.signup_s[user] > ts_s  # a user cannot act before signing up
    if not_yet.any():
        veterans = np.flatnonzero(users.signup_s < day_start_s)
        if veterans.size:
            user[not_yet] = veterans[rng.integers(0, veterans.size, int(not_yet.sum()))]

    event_type = rng.choice(len(event_types()), n, p=EVENT_TYPE_P)
    dwell = np.where(event_type == 0, rng.lognormal(7.6, 0.9, n).astype(np.int64), -1)
    comment = np.where(event_type == 2, rng.integers(0, len(COMMENTS), n), -1)
    order = np.argsort(ts_us, kind="stable")
    return DayEvents(
        ts_us[order], event_type[order], user[order], photo[order], dwell[order], comment[order]
    )
