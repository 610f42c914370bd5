"""Write a landing folder the way a photo-sharing app dumps it.

Streams: one day of events (or one chunk of photos) in memory at a time, so 100M events
need no more memory than 1M. Deterministic for a seed and an end date.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse.contracts import embedding_dim, event_types
from lakehouse.synth import dirty
from lakehouse.synth.events import COMMENTS, day_events
from lakehouse.synth.world import (
    CAMERAS,
    COUNTRIES,
    DEVICES,
    DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    SECONDS_PER_DAY,
    SIZES,
    day_volume_weights,
    make_photos,
    make_users,
)

DEFAULT_END = datetime(2026, 11, 1, tzinfo=UTC)
MANIFEST = "_generator.json"
MODEL_VERSION = "clf-v3"


class GenerateError(ValueError):
    """Options that contradict the world a landing folder already holds."""


# the options that make a world: the same ones append its nights, others would mix worlds
WORLD_OPTIONS = ("users", "photos", "days", "events", "seed", "dirty_rate", "end", "rows_per_file")


@dataclass(frozen=True)
class GenerateConfig:
    out: Path
    users: int = 5_000
    photos: int = 50_000
    days: int = 60
    events: int | None = None  # total, approximately; default 40 per photo
    seed: int = 7
    dirty_rate: float = 0.0
    end: datetime = DEFAULT_END
    rows_per_file: int = 100_000
    # nights after the history (``end``) in the folder: lakehouse.synth.nights appends the
    # missing ones to a folder that holds this world's history and earlier nights
    nights: int = 0
    # events of each night after the history; None: the history's volume of a day, so nights
    # grow with the history (a fixed size compares nights on histories of different sizes)
    night_events: int | None = None

    @property
    def total_events(self) -> int:
        return self.events if self.events is not None else self.photos * 40

    @classmethod
    def for_folder(cls, out: Path, **given: object) -> GenerateConfig:
        """The config for ``out``: the options ``given`` (None: not given), the rest from
        the world the folder holds (its ``_generator.json``), else the defaults; so
        ``--nights 3`` on a folder appends to the world that is there."""
        saved = world_of(out) or {}
        chosen = {k: v for k, v in given.items() if v is not None}
        kept = {k: saved[k] for k in WORLD_OPTIONS if k in saved and k not in chosen}
        return cls(out=out, **{**kept, **chosen})  # type: ignore[arg-type]


def world_of(out: Path) -> dict[str, object] | None:
    """The world options of the folder's ``_generator.json`` (None when it has none)."""
    try:
        config = json.loads((Path(out) / MANIFEST).read_text())["config"]
        world = {k: config[k] for k in WORLD_OPTIONS if k in config}
        if isinstance(world.get("end"), str):
            world["end"] = datetime.fromisoformat(world["end"])
        return world
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class TableStats:
    files: list[str] = field(default_factory=list)
    clean_rows: int = 0
    injected: Counter[str] = field(default_factory=Counter)
    rows_written: int = 0


@dataclass
class GenerateReport:
    """What was written: per source its files (relative to the landing folder), clean rows,
    dirty rows injected by kind, and rows written in all."""

    config: dict[str, object]
    tables: dict[str, TableStats]

    def to_json(self) -> str:
        return json.dumps(
            {
                "config": self.config,
                "tables": {
                    k: {**asdict(v), "injected": dict(v.injected)} for k, v in self.tables.items()
                },
            },
            indent=2,
            default=str,
        )


ProgressFn = Callable[[str, int, int], None]  # (step, done, total)


def refuse_another_world(out: Path, config: GenerateConfig) -> None:
    """A folder holding another world's files is never written into: its history would be
    rewritten with this world's (mixing two in one folder, ids and all)."""
    saved = world_of(out)
    if saved is None:
        return
    differ = [
        f"--{k.replace('_', '-')} {_shown(saved.get(k))} (not {_shown(getattr(config, k))})"
        for k in WORLD_OPTIONS
        if saved.get(k) != getattr(config, k)
    ]
    if differ:
        raise GenerateError(
            f"{out} holds a world generated with {', '.join(differ)}; to append nights to it "
            "give the same options (or leave them out), or generate into another --out"
        )


def _shown(value: object) -> str:
    return f"{value:%Y-%m-%d}" if isinstance(value, datetime) else str(value)


def day_bounds(config: GenerateConfig) -> tuple[int, int]:
    """(end, start) of the history in seconds since epoch: whole UTC days."""
    end_s = int(config.end.timestamp()) // SECONDS_PER_DAY * SECONDS_PER_DAY
    return end_s, end_s - config.days * SECONDS_PER_DAY


def existing_world(out: Path, config: GenerateConfig) -> tuple[dict[str, TableStats] | None, int]:
    """The folder's per-table stats and nights when it holds ``config``'s world."""
    try:
        manifest = json.loads((out / MANIFEST).read_text())
        have = int(manifest["config"].get("nights", 0))
        # a night's size shapes the nights only: a history without nights serves any
        ignored = ("out", "nights") if have else ("out", "nights", "night_events")
        same = {
            k: (str(v) if isinstance(v, datetime) else v)
            for k, v in asdict(config).items()
            if k not in ignored
        }
        if any(manifest["config"].get(k) != v for k, v in same.items()):
            return None, 0
        stats = {
            name: TableStats(
                files=list(t["files"]),
                clean_rows=int(t["clean_rows"]),
                injected=Counter(t["injected"]),
                rows_written=int(t["rows_written"]),
            )
            for name, t in manifest["tables"].items()
        }
        return stats, have
    except (OSError, ValueError, KeyError, TypeError):
        return None, 0


def write_history(out: Path, config: GenerateConfig, report: ProgressFn) -> dict[str, TableStats]:
    rng = np.random.default_rng(config.seed)
    end_s, start_s = day_bounds(config)
    for folder in ("users", "photos", "embeddings", "events"):
        (out / folder).mkdir(parents=True, exist_ok=True)

    users = make_users(rng, config.users, start_s, end_s)
    photos = make_photos(rng, config.photos, users, start_s, end_s)
    stats = {name: TableStats() for name in ("users", "photos", "photo_embeddings", "events")}
    dirt = np.random.default_rng([config.seed, 1])  # dirt never shifts the clean data

    report("users", 0, 1)
    write_users(out, users, config, dirt, stats["users"])
    report("photos", 0, 1)
    write_photos(out, photos, config, dirt, stats["photos"])
    write_embeddings(out, photos, config, dirt, stats["photo_embeddings"])

    volume = day_volume_weights(datetime.fromtimestamp(start_s, UTC), config.days)
    per_day = np.floor(config.total_events * volume / volume.sum()).astype(np.int64)
    for day in range(config.days):
        report("events", day, config.days)
        day_start = start_s + day * SECONDS_PER_DAY
        events = day_events(rng, users, photos, day_start, int(per_day[day]))
        _write_event_day(out, day, day_start, events, users, photos, config, dirt, stats["events"])
    report("events", config.days, config.days)
    return stats


def iso(seconds: np.ndarray) -> np.ndarray:
    """UTC ISO-8601 strings with milliseconds and a Z, vectorised."""
    as_dt = (np.asarray(seconds, dtype=np.float64) * 1000).astype("datetime64[ms]")
    return np.char.add(np.datetime_as_string(as_dt, unit="ms"), "Z")


# ---------------------------------------------------------------- users (CSV)

USER_COLUMNS = (
    "user_id",
    "signup_at",
    "country",
    "email",
    "display_name",
    "birth_year",
    "is_verified",
)


def write_users(
    out: Path, users, config: GenerateConfig, dirt, stats: TableStats, stem: str = "users"
) -> None:
    signup = iso(users.signup_s)
    verified = users.influence > np.quantile(users.influence, 0.99)
    rows = []
    for i in range(len(users.ids)):
        first, last = FIRST_NAMES[users.first[i]], LAST_NAMES[users.last[i]]
        email = f"{first.lower()}.{_ascii(last).lower()}{users.ids[i]}@{DOMAINS[i % 3]}"
        rows.append(
            [
                int(users.ids[i]),
                str(signup[i]),
                COUNTRIES[users.country[i]],
                email,
                f"{first} {last}",
                int(users.birth_year[i]),
                bool(verified[i]),
            ]
        )
    for index, start in enumerate(range(0, len(rows), config.rows_per_file)):
        chunk = rows[start : start + config.rows_per_file]
        lines = [_csv_line(row) for row in chunk]
        extra: list[tuple[int, bytes]] = []
        for row_index, kind in dirty.plan(dirt, len(chunk), config.dirty_rate, dirty.USER_KINDS):
            stats.injected[kind] += 1
            row = list(chunk[row_index])
            if kind == "timezone_offset":
                row[1] = dirty.offset_timestamp(row[1])
                lines[row_index] = _csv_line(row)
                continue
            if kind != "duplicate_id":
                row[0] = dirty.FRESH_ID_BASE + sum(stats.injected.values())
            line = _dirty_user_line(row, kind)
            extra.append((row_index, line))
        path = out / "users" / f"{stem}-{index:05d}.csv"
        body = _merge(lines, extra)
        path.write_bytes(_csv_line(list(USER_COLUMNS)) + b"\n" + b"\n".join(body) + b"\n")
        stats.files.append(str(path.relative_to(out)))
        stats.clean_rows += len(chunk)
        stats.rows_written += len(body)


def _dirty_user_line(row: list[object], kind: str) -> bytes:
    if kind == "wrong_column_count":
        return _csv_line([*row, "extra"])
    if kind == "missing_field":
        row[0] = ""
    elif kind == "wrong_type":
        row[0] = f"user-{row[0]}"
    elif kind == "bad_timestamp_format":
        row[1] = dirty.naive_other_format(str(row[1]))
    elif kind == "oversized_string":
        row[4] = "X" * 300
    elif kind == "invalid_utf8":
        return _csv_line(row[:4]) + b",Jos\xe9 Latin1," + _csv_line(row[5:])
    return _csv_line(row)


def _csv_line(row: list[object]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(
        ["true" if v is True else "false" if v is False else v for v in row]
    )
    return buffer.getvalue().encode()


# ---------------------------------------------------------------- photos (JSONL)


def write_photos(
    out: Path, photos, config: GenerateConfig, dirt, stats: TableStats, stem: str = "photos"
) -> None:
    posted = iso(photos.posted_s)
    for index, start in enumerate(range(0, len(photos.ids), config.rows_per_file)):
        stop = min(start + config.rows_per_file, len(photos.ids))
        records = [photo_record(photos, i, str(posted[i])) for i in range(start, stop)]
        lines, extra = _json_with_dirt(
            records,
            dirt,
            config.dirty_rate,
            dirty.PHOTO_KINDS,
            stats,
            id_field="photo_id",
            ts_field="posted_at",
            type_field="owner_id",
            text_field="caption",
            fresh_id=lambda k: dirty.FRESH_ID_BASE + k,
        )
        path = out / "photos" / f"{stem}-{index:05d}.jsonl"
        body = _merge(lines, extra)
        path.write_bytes(b"\n".join(body) + b"\n")
        stats.files.append(str(path.relative_to(out)))
        stats.clean_rows += len(records)
        stats.rows_written += len(body)


def photo_record(photos, i: int, posted_at: str) -> dict[str, object]:
    """Photo ``i`` as the app's JSON record (``posted_at``: its time, from ``iso``)."""
    width, height = SIZES[photos.size[i]]
    return {
        "photo_id": int(photos.ids[i]),
        "owner_id": int(photos.owner[i]) + 1,
        "posted_at": posted_at,
        "caption": photos.caption[i],
        "width": width,
        "height": height,
        "camera": CAMERAS[photos.camera[i]] if photos.camera[i] >= 0 else None,
        "lang": photos.lang[i],
    }


def _json_with_dirt(records, dirt, rate, kinds, stats: TableStats, *, fresh_id, **fields):
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in records]
    extra: list[tuple[int, bytes]] = []
    for row_index, kind in dirty.plan(dirt, len(records), rate, kinds):
        stats.injected[kind] += 1
        record = records[row_index]
        if kind == "timezone_offset":
            ts_field = fields["ts_field"]
            changed = {**record, ts_field: dirty.offset_timestamp(str(record[ts_field]))}
            lines[row_index] = json.dumps(changed, ensure_ascii=False).encode()
            continue
        line = dirty.dirty_json_line(
            record, kind, fresh_id=fresh_id(sum(stats.injected.values())), **fields
        )
        extra.append((row_index, line))
    return lines, extra


def _merge(lines: list[bytes], extra: list[tuple[int, bytes]]) -> list[bytes]:
    """Clean lines with each dirty line placed right after the clean row it was made from."""
    if not extra:
        return lines
    out: list[bytes] = []
    cursor = 0
    for row_index, line in extra:
        out.extend(lines[cursor : row_index + 1])
        cursor = max(cursor, row_index + 1)
        out.append(line)
    out.extend(lines[cursor:])
    return out


# ---------------------------------------------------------------- embeddings (Parquet)


def write_embeddings(
    out: Path,
    photos,
    config: GenerateConfig,
    dirt,
    stats: TableStats,
    stem: str = "embeddings",
) -> None:
    for index, start in enumerate(range(0, len(photos.ids), config.rows_per_file)):
        stop = min(start + config.rows_per_file, len(photos.ids))
        ids: list[int | None] = photos.ids[start:stop].tolist()
        vectors: list[list[float]] = photos.embedding[start:stop].tolist()
        clean = len(ids)
        for row_index, kind in dirty.plan(dirt, clean, config.dirty_rate, dirty.EMBEDDING_KINDS):
            stats.injected[kind] += 1
            fresh = dirty.FRESH_ID_BASE + sum(stats.injected.values())
            vector = list(vectors[row_index])
            if kind == "missing_field":
                ids.append(None)
            elif kind == "duplicate_id":
                ids.append(ids[row_index])
            elif kind == "wrong_length":
                ids.append(fresh)
                vector = vector[:-1]
            else:  # non_finite
                ids.append(fresh)
                vector[3] = float("nan")
            vectors.append(vector)
        table = pa.table(
            {
                "photo_id": pa.array(ids, pa.int64()),
                "model_version": pa.array([MODEL_VERSION] * len(ids)),
                "embedding": pa.array(vectors, pa.list_(pa.float32())),
            }
        )
        path = out / "embeddings" / f"{stem}-{index:05d}.parquet"
        pq.write_table(table, path, compression="zstd")
        stats.files.append(str(path.relative_to(out)))
        stats.clean_rows += clean
        stats.rows_written += len(ids)
    assert photos.embedding.shape[1] == embedding_dim()


# ---------------------------------------------------------------- events (JSONL.gz, daily)


def _write_event_day(
    out: Path,
    day: int,
    day_start: int,
    events,
    users,
    photos,
    config: GenerateConfig,
    dirt,
    stats: TableStats,
) -> None:
    date = datetime.fromtimestamp(day_start, UTC).date().isoformat()
    records = event_records(day, day_start, events, users)
    write_events_file(
        out / "events" / f"events-{date}.jsonl.gz",
        records,
        config.dirty_rate,
        dirt,
        stats,
        fresh_id=lambda k: f"e-dirty-{k:08d}",
    )


def event_records(day: int, day_start: int, events, users) -> list[dict[str, object]]:
    """One JSON record per event of a day; event ids ``e<day>-<index>`` are unique."""
    n = events.ts_us.size
    ts = iso(events.ts_us // 1000 / 1000)
    user_ids = (events.user + 1).tolist()
    photo_ids = (events.photo + 1).tolist()
    hours = ((events.ts_us // 1_000_000 - day_start) // 3600).tolist()
    devices = users.device[events.user].tolist()
    types = events.event_type.tolist()
    dwell = events.dwell_ms.tolist()
    comment = events.comment.tolist()
    records = []
    kinds = event_types()
    for i in range(n):
        records.append(
            {
                "event_id": f"e{day:04d}-{i:08d}",
                "event_type": kinds[types[i]],
                "ts": str(ts[i]),
                "user_id": user_ids[i],
                "photo_id": photo_ids[i],
                "session_id": f"s{user_ids[i]:x}-{day}-{hours[i]}",
                "device": DEVICES[devices[i]],
                "dwell_ms": dwell[i] if dwell[i] >= 0 else None,
                "comment_text": _comment(comment[i], user_ids[i]) if comment[i] >= 0 else None,
            }
        )
    return records


def write_events_file(
    path: Path,
    records: list[dict[str, object]],
    dirty_rate: float,
    dirt,
    stats: TableStats,
    *,
    fresh_id: Callable[[int], object],
    late: list[dict[str, object]] | None = None,
) -> list[bytes]:
    """A gzipped JSONL events file: the records (with dirt at ``dirty_rate``), then the
    ``late`` records of earlier days, clean. Returns the lines written."""
    lines, extra = _json_with_dirt(
        records,
        dirt,
        dirty_rate,
        dirty.EVENT_KINDS,
        stats,
        id_field="event_id",
        ts_field="ts",
        type_field="user_id",
        text_field="comment_text",
        fresh_id=fresh_id,
    )
    body = _merge(lines, extra)
    body += [json.dumps(r, ensure_ascii=False).encode() for r in late or ()]
    write_gzip_lines(path, body)
    stats.files.append(f"{path.parent.name}/{path.name}")
    stats.clean_rows += len(records) + len(late or ())
    stats.rows_written += len(body)
    return body


def write_gzip_lines(path: Path, body: list[bytes]) -> None:
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(
            fileobj=raw,
            mode="wb",
            compresslevel=3,
            mtime=0,  # mtime=0: same seed, same bytes
        ) as handle,
    ):
        for start in range(0, len(body), 65_536):
            handle.write(b"".join(line + b"\n" for line in body[start : start + 65_536]))


def _comment(index: int, user_id: int) -> str:
    text = COMMENTS[index]
    return text.format(name=f"{FIRST_NAMES[user_id % len(FIRST_NAMES)].lower()}{user_id}")


def _ascii(text: str) -> str:
    return text.replace("ü", "u").replace("í", "i").replace("ó", "o")
