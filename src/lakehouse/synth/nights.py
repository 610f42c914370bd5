"""The world goes on: the nights after a generated history, one landing dump per night.

Night ``k`` (1, 2, ...) is the UTC day that starts ``k - 1`` days after the history's end.
Its dump holds what a real app sends that night:

- the day's new users, photos and embeddings (``users-<day>-*.csv``, ...);
- the day's events (``events-<day>.jsonl.gz``) with dirt at the history's rate, minus about
  1% that the phones send late: half of those come in the next night's file, half the night
  after (same event ids and times, appended after the night's own events);
- a retried upload: the last lines of the previous night's events file, re-sent under another
  name (``events-<day>-retry.jsonl.gz``), so the same event ids arrive twice;
- corrected photo metadata (``photos-<day>-corrections.jsonl``): a few photos of the past week
  whose owners edited the caption, sent again in full with ``updated_at`` set.

Every night is a function of the seed, the history's configuration and the night's number
only, so appending nights never changes an earlier file, and the same nights give the same
bytes whatever order (or how many runs) they were appended in.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from lakehouse.synth import history
from lakehouse.synth.events import day_events
from lakehouse.synth.world import (
    SECONDS_PER_DAY,
    Photos,
    Users,
    concat,
    day_volume_weights,
    make_photos,
    make_users,
    weekend_factor,
)

LATE_RATE = 0.01  # of a night's events, sent one or two nights late
RETRY_RATE = 0.02  # of the previous night's lines, re-sent by a retried upload
CORRECTION_RATE = 0.005  # of the past week's photos, caption edited
NEW_USER_RATE = 0.15  # of the history's users per history day: signups per night


@dataclass
class Night:
    """What one night added to the world, and its events before any are held back."""

    number: int
    day_start: int  # seconds since epoch, UTC
    users: Users
    photos: Photos
    events: list[dict[str, object]]
    late: np.ndarray  # per event: 0 on time, 1 or 2 nights late

    @property
    def date(self) -> str:
        return datetime.fromtimestamp(self.day_start, UTC).date().isoformat()


def history_world(config: history.GenerateConfig) -> tuple[Users, Photos]:
    """The users and photos of the generated history: the same draws as ``generate``."""
    rng = np.random.default_rng(config.seed)
    end_s, start_s = history.day_bounds(config)
    users = make_users(rng, config.users, start_s, end_s)
    photos = make_photos(rng, config.photos, users, start_s, end_s)
    return users, photos


def append_nights(
    out: Path,
    config: history.GenerateConfig,
    have: int,
    want: int,
    stats: dict[str, history.TableStats],
    progress: history.ProgressFn,
) -> None:
    """Write nights ``have + 1 .. want`` of ``config``'s world into ``out``."""
    users, photos = history_world(config)
    end_s, _ = history.day_bounds(config)
    recent: dict[int, Night] = {}
    for number in range(1, want + 1):
        night = _night(config, number, end_s, users, photos, with_events=number > have - 2)
        users, photos = concat(users, night.users), concat(photos, night.photos)
        recent[number] = night
        recent.pop(number - 3, None)
        if number > have:
            progress("nights", number - have - 1, want - have)
            _write_night(out, config, night, recent, photos, stats)
    progress("nights", want - have, want - have)


def _night(
    config: history.GenerateConfig,
    number: int,
    end_s: int,
    users: Users,
    photos: Photos,
    *,
    with_events: bool,
) -> Night:
    rng = np.random.default_rng([config.seed, 2, number])
    day_start = end_s + (number - 1) * SECONDS_PER_DAY
    day_end = day_start + SECONDS_PER_DAY

    # a night of the history's daily volume, or of night_events with the world's ratios
    scale = 1.0
    if config.night_events is not None:
        scale = config.night_events / (config.total_events / config.days)
    n_users = max(1, round(NEW_USER_RATE * config.users / config.days * scale))
    new_users = make_users(rng, n_users, day_start, day_end)
    new_users.ids = np.arange(len(users.ids) + 1, len(users.ids) + n_users + 1, dtype=np.int64)
    new_users.signup_s = rng.integers(day_start, day_end - 2 * 3600, n_users).astype(np.int64)
    everyone = concat(users, new_users)

    n_photos = max(1, round(config.photos / config.days * scale))
    new_photos = make_photos(
        rng,
        n_photos,
        everyone,
        day_start,
        day_end,
        style=photos.style,
        first_id=len(photos.ids) + 1,
    )
    if not with_events:
        return Night(number, day_start, new_users, new_photos, [], np.zeros(0, np.int64))

    all_photos = concat(photos, new_photos)
    history_days = day_volume_weights(
        datetime.fromtimestamp(end_s - config.days * SECONDS_PER_DAY, UTC), config.days
    )
    # the history's trend on its last day, carried on with this day's weekday factor
    trend = history_days[-1] / weekend_factor(datetime.fromtimestamp(end_s - SECONDS_PER_DAY, UTC))
    volume = weekend_factor(datetime.fromtimestamp(day_start, UTC)) * float(trend)
    n_events = (
        int(config.total_events * volume / history_days.sum())
        if config.night_events is None
        else config.night_events
    )
    events = day_events(rng, everyone, all_photos, day_start, n_events)
    day_index = config.days + number - 1
    records = history.event_records(day_index, day_start, events, everyone)
    late = np.where(rng.random(len(records)) < LATE_RATE, rng.integers(1, 3, len(records)), 0)
    return Night(number, day_start, new_users, new_photos, records, late)


def _write_night(
    out: Path,
    config: history.GenerateConfig,
    night: Night,
    recent: dict[int, Night],
    photos: Photos,
    stats: dict[str, history.TableStats],
) -> None:
    date = night.date
    dirt = np.random.default_rng([config.seed, 3, night.number])
    clean = history.GenerateConfig(**{**vars(config), "dirty_rate": 0.0})
    history.write_users(out, night.users, clean, dirt, stats["users"], stem=f"users-{date}")
    history.write_photos(out, night.photos, clean, dirt, stats["photos"], stem=f"photos-{date}")
    history.write_embeddings(
        out, night.photos, clean, dirt, stats["photo_embeddings"], stem=f"embeddings-{date}"
    )
    _write_corrections(out, config.seed, night, photos, stats["photos"])

    on_time = [r for r, d in zip(night.events, night.late, strict=True) if d == 0]
    arriving = [
        r
        for back in (2, 1)
        if (earlier := recent.get(night.number - back)) is not None
        for r, d in zip(earlier.events, earlier.late, strict=True)
        if d == back
    ]
    history.write_events_file(
        out / "events" / f"events-{date}.jsonl.gz",
        on_time,
        config.dirty_rate,
        dirt,
        stats["events"],
        fresh_id=lambda k: f"e-dirty-n{night.number:04d}-{k:08d}",
        late=arriving,
    )
    previous = recent.get(night.number - 1)
    if previous is not None:
        # the phones retry yesterday's last upload: those lines (as written then) again
        yesterday = _events_lines(out, previous.date)
        retried = yesterday[: max(1, int(len(yesterday) * RETRY_RATE))]
        path = out / "events" / f"events-{date}-retry.jsonl.gz"
        history.write_gzip_lines(path, retried)
        stats["events"].files.append(f"events/{path.name}")
        stats["events"].rows_written += len(retried)


def _events_lines(out: Path, date: str) -> list[bytes]:
    return gzip.decompress((out / "events" / f"events-{date}.jsonl.gz").read_bytes()).splitlines()


def _write_corrections(
    out: Path, seed: int, night: Night, photos: Photos, stats: history.TableStats
) -> None:
    """Owners edit the captions of a few photos posted in the week before the night."""
    rng = np.random.default_rng([seed, 4, night.number])
    week = np.flatnonzero(
        (photos.posted_s >= night.day_start - 7 * SECONDS_PER_DAY)
        & (photos.posted_s < night.day_start)
    )
    if week.size == 0:
        return
    n = max(1, int(week.size * CORRECTION_RATE))
    chosen = np.sort(rng.choice(week, n, replace=False))
    edited_at = history.iso(
        night.day_start + np.sort(rng.integers(0, SECONDS_PER_DAY, n)).astype(np.float64)
    )
    posted = history.iso(photos.posted_s)
    records = []
    for i, index in enumerate(chosen):
        record = history.photo_record(photos, int(index), str(posted[index]))
        record["caption"] = f"{record['caption'] or ''} (edited) #nofilter".strip()
        record["updated_at"] = str(edited_at[i])
        records.append(record)
    path = out / "photos" / f"photos-{night.date}-corrections.jsonl"
    path.write_bytes(b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records))
    stats.files.append(f"photos/{path.name}")
    stats.clean_rows += len(records)
    stats.rows_written += len(records)
