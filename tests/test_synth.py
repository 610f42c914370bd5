"""The sample data looks like a real app's: deterministic, heavy-tailed, rhythmic, decaying,
and with a label that the features can predict."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from lakehouse.synth import generate
from tests.conftest import small_config


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    config = small_config(out, dirty_rate=0.0, seed=5)
    generate(type(config)(**{**config.__dict__, "days": 30, "photos": 4_000, "events": 120_000}))
    return out


def _events(folder: Path) -> list[dict]:
    rows = []
    for path in sorted((folder / "events").iterdir()):
        rows.extend(json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines())
    return rows


def _photos(folder: Path) -> list[dict]:
    return [
        json.loads(line)
        for p in sorted((folder / "photos").iterdir())
        for line in p.read_text().splitlines()
    ]


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    generate(small_config(tmp_path / "a", dirty_rate=0.02))
    generate(small_config(tmp_path / "b", dirty_rate=0.02))
    generate(small_config(tmp_path / "c", dirty_rate=0.02, seed=12))
    a, b, c = (_digest(tmp_path / x) for x in "abc")
    assert a == b
    assert a.keys() == c.keys() and a != c


def test_event_volume_matches_the_request(clean: Path) -> None:
    assert abs(len(_events(clean)) - 120_000) / 120_000 < 0.01


def test_popularity_is_heavy_tailed(clean: Path) -> None:
    counts = np.bincount([e["photo_id"] for e in _events(clean)])
    counts = np.sort(counts[counts > 0])[::-1]
    top_decile = counts[: len(counts) // 10].sum() / counts.sum()
    assert top_decile > 0.4, f"top 10% of photos get only {top_decile:.0%} of events"
    assert counts[0] > 20 * np.median(counts)


def test_activity_follows_the_time_of_day_and_the_week(clean: Path) -> None:
    events = _events(clean)
    hours = np.bincount([_ts(e["ts"]).hour for e in events], minlength=24)
    assert hours[18:22].mean() > 3 * hours[2:5].mean()
    per_day: dict[object, int] = {}
    for e in events:
        day = _ts(e["ts"]).date()
        per_day[day] = per_day.get(day, 0) + 1
    days = sorted(per_day)[7:]  # skip the warm-up week with few photos online
    weekend = np.mean([per_day[d] for d in days if d.weekday() >= 5])
    weekday = np.mean([per_day[d] for d in days if d.weekday() < 5])
    assert weekend > 1.1 * weekday


def test_engagement_decays_after_posting(clean: Path) -> None:
    posted = {p["photo_id"]: _ts(p["posted_at"]) for p in _photos(clean)}
    ages = np.array(
        [(_ts(e["ts"]) - posted[e["photo_id"]]) / timedelta(days=1) for e in _events(clean)]
    )
    assert ages.min() >= 0  # nobody sees a photo before it is posted
    first_day = (ages < 1).sum()
    days_3_to_7 = ((ages >= 3) & (ages < 7)).sum()
    assert first_day > 2 * days_3_to_7 > 0


def test_users_have_pii_and_photos_have_multilingual_captions(clean: Path) -> None:
    with open(next((clean / "users").iterdir()), newline="") as handle:
        users = list(csv.DictReader(handle))
    assert all("@" in u["email"] and " " in u["display_name"] for u in users)
    photos = _photos(clean)
    assert {p["lang"] for p in photos} >= {"en", "es", "ja", "pt", "de", "fr"}
    assert any("#" in p["caption"] for p in photos)
    assert any(ord(ch) > 0x2000 for p in photos for ch in p["caption"])  # emoji / CJK


def test_seven_day_likes_are_learnable_from_features(clean: Path) -> None:
    """Least squares on (embedding, owner's likes before posting) beats a constant."""
    photos = {p["photo_id"]: p for p in _photos(clean)}
    events = _events(clean)
    end = max(_ts(e["ts"]) for e in events)
    likes_7d: dict[int, int] = {}
    owner_likes: dict[int, list[datetime]] = {}
    for e in events:
        if e["event_type"] != "like":
            continue
        photo = photos[e["photo_id"]]
        ts, posted = _ts(e["ts"]), _ts(photo["posted_at"])
        if ts < posted + timedelta(days=7):
            likes_7d[e["photo_id"]] = likes_7d.get(e["photo_id"], 0) + 1
        owner_likes.setdefault(photo["owner_id"], []).append(ts)
    embeddings = pq.read_table(clean / "embeddings").to_pydict()
    vectors = dict(zip(embeddings["photo_id"], embeddings["embedding"], strict=True))
    mature = [pid for pid, p in photos.items() if _ts(p["posted_at"]) + timedelta(days=7) <= end]
    x = np.array(
        [
            [
                *vectors[pid],
                np.log1p(
                    sum(
                        t < _ts(photos[pid]["posted_at"])
                        for t in owner_likes.get(photos[pid]["owner_id"], [])
                    )
                ),
            ]
            for pid in mature
        ]
    )
    x = np.hstack([x, np.ones((len(x), 1))])
    y = np.log1p(np.array([likes_7d.get(pid, 0) for pid in mature]))
    half = len(y) // 2
    coef, *_ = np.linalg.lstsq(x[:half], y[:half], rcond=None)
    model_mse = np.mean((x[half:] @ coef - y[half:]) ** 2)
    constant_mse = np.mean((y[:half].mean() - y[half:]) ** 2)
    assert model_mse < 0.8 * constant_mse, (model_mse, constant_mse)


def test_nights_append_without_changing_earlier_files(tmp_path: Path) -> None:
    from dataclasses import replace

    base = small_config(tmp_path / "grown", dirty_rate=0.02)
    generate(base)
    history = _digest(tmp_path / "grown")
    generate(replace(base, nights=1))
    generate(replace(base, nights=3))  # appends nights 2 and 3 only
    grown = _digest(tmp_path / "grown")
    generate(replace(base, out=tmp_path / "at_once", nights=3))
    at_once = _digest(tmp_path / "at_once")
    manifest = "_generator.json"
    assert {k: v for k, v in grown.items() if k in history and k != manifest} == {
        k: v for k, v in history.items() if k != manifest
    }  # earlier files never change
    assert grown == at_once  # the same nights, however they were appended
    new = sorted(set(grown) - set(history))
    assert "events/events-2026-11-03.jsonl.gz" in new  # night 3 is 2026-11-03
    assert "events/events-2026-11-03-retry.jsonl.gz" in new
    assert "photos/photos-2026-11-02-corrections.jsonl" in new


def test_a_night_brings_late_events_resent_ids_and_edited_photos(tmp_path: Path) -> None:
    from dataclasses import replace

    out = tmp_path / "landing"
    generate(replace(small_config(out, dirty_rate=0.0), nights=3))

    def events(name: str) -> list[dict]:
        return [
            json.loads(x)
            for x in gzip.decompress((out / "events" / name).read_bytes()).splitlines()
        ]

    third = events("events-2026-11-03.jsonl.gz")
    days = {e["ts"][:10] for e in third}
    assert days >= {"2026-11-03", "2026-11-02", "2026-11-01"}  # on time and one or two late
    late = [e for e in third if not e["ts"].startswith("2026-11-03")]
    assert 0 < len(late) < len(third) * 0.03
    retried = {e["event_id"] for e in events("events-2026-11-03-retry.jsonl.gz")}
    assert retried and retried <= {e["event_id"] for e in events("events-2026-11-02.jsonl.gz")}
    edits = [
        json.loads(x)
        for x in (out / "photos" / "photos-2026-11-02-corrections.jsonl").read_text().splitlines()
    ]
    originals = {p["photo_id"]: p for p in _photos(out) if "updated_at" not in p}
    for edit in edits:
        before = originals[edit["photo_id"]]
        assert edit["caption"] != before["caption"] and edit["updated_at"][:10] == "2026-11-02"
        assert (edit["owner_id"], edit["posted_at"]) == (before["owner_id"], before["posted_at"])


def test_a_night_of_a_fixed_size_is_that_size_on_any_history(tmp_path: Path) -> None:
    """night_events fixes a night's events (and scales its new photos and users with them),
    so nights on a small and a ten times larger history can be compared."""
    from dataclasses import replace

    sizes = {}
    for factor in (1, 10):
        out = tmp_path / f"x{factor}"
        base = small_config(out, dirty_rate=0.0)
        base = replace(
            base, photos=base.photos * factor, users=base.users * factor, events=36_000 * factor
        )
        generate(replace(base, nights=1, night_events=3_000))
        night = gzip.decompress((out / "events" / "events-2026-11-01.jsonl.gz").read_bytes())
        new_photos = [p for p in _photos(out) if p["posted_at"] >= "2026-11-01"]
        sizes[factor] = (len(night.splitlines()), len(new_photos))
    # the night's own events minus about 1% held back late, plus none from earlier nights
    assert all(2_900 <= events <= 3_000 for events, _ in sizes.values()), sizes
    assert sizes[1][1] == sizes[10][1] > 0  # new photos follow the night, not the history


def test_a_history_gets_nights_of_a_fixed_size_without_being_written_again(
    tmp_path: Path,
) -> None:
    """A history made without --night-events is the same history for nights of any size:
    bench_nights.py rewrote a 100M history (ten minutes) before its first fixed-size night."""
    from dataclasses import replace

    out = tmp_path / "landing"
    base = small_config(out, dirty_rate=0.0)
    generate(base)
    before = {p: (_sha(p), p.stat().st_mtime_ns) for p in out.rglob("*.*")}
    generate(replace(base, nights=2, night_events=3_000))
    after = {p: (_sha(p), p.stat().st_mtime_ns) for p in out.rglob("*.*")}
    assert {p: after[p] for p in before if p.name != "_generator.json"} == {
        p: v for p, v in before.items() if p.name != "_generator.json"
    }  # not one history file written again
    assert (out / "events" / "events-2026-11-02.jsonl.gz") in after
    generate(replace(base, out=tmp_path / "at_once", nights=2, night_events=3_000))
    assert _digest(out) == _digest(tmp_path / "at_once")  # the same nights either way


def test_appending_nights_reuses_the_folders_world_and_refuses_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`generate --nights 1` on a folder of a smaller world used to rewrite its history with
    a default-sized world (61 event files) instead of appending one night."""
    from lakehouse.cli import main

    out = tmp_path / "landing"
    world = ["--users", "200", "--photos", "1500", "--days", "15"]
    assert main(["generate", "--out", str(out), *world]) == 0
    before = {p: _sha(p) for p in out.rglob("*.*") if p.name != "_generator.json"}
    assert len(list((out / "events").iterdir())) == 15
    assert main(["generate", "--out", str(out), "--nights", "1"]) == 0  # the folder's world
    events = sorted((out / "events").iterdir())
    assert len(events) == 16 and all(_sha(p) == sha for p, sha in before.items())
    capsys.readouterr()
    contradicting = ["--seed", "5", "--users", "5000", "--nights", "2"]
    assert main(["generate", "--out", str(out), *contradicting]) == 1
    err = capsys.readouterr().err.replace("\n", "")
    assert "holds a world generated with --users 200 (not 5000), --seed 7 (not 5)" in err
    assert sorted((out / "events").iterdir()) == events  # nothing written
    assert all(_sha(p) == sha for p, sha in before.items())


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
