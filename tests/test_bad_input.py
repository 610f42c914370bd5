"""Bad input never crashes the ingest and never loses a row: every line of every file is in
bronze, in quarantine with a reason, or counted as a duplicate. Property-based fuzzing of
the JSON-lines and CSV parsers, plus the real-world cases: a CSV whose header disagrees
with its rows, files in other encodings."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lakehouse.cli import main
from lakehouse.ingest import ingest
from tests.conftest import NIGHT
from tests.helpers import bronze

USERS_HEADER = "user_id,signup_at,country,email,display_name,birth_year,is_verified"


def _ingest_one(folder: str, name: str, data: bytes, *, photos: bytes = b""):
    """Ingest one file into a fresh lake (after ``photos``, the photos its events refer to)."""
    with tempfile.TemporaryDirectory() as tmp:
        landing = Path(tmp) / "landing"
        (landing / folder).mkdir(parents=True)
        (landing / folder / name).write_bytes(data)
        if photos:
            (landing / "photos").mkdir()
            (landing / "photos" / "photos.jsonl").write_bytes(photos)
        lake = Path(tmp) / "lake"
        report = ingest(str(landing), str(lake), now=NIGHT)
        (result,) = [f for f in report.files if f.table != "photos" or folder == "photos"]
        quarantine = (
            bronze(lake, "_quarantine").num_rows
            if (lake / "bronze" / "_quarantine").exists()
            else 0
        )
        table = (
            bronze(lake, result.table)
            if (lake / "bronze" / result.table / "_delta_log").exists()
            else None
        )
        return result, table, quarantine


def _lines(data: bytes, header: bool) -> int:
    """Rows in the file by an independent count: non-blank lines, minus a CSV header."""
    count = sum(1 for line in data.split(b"\n") if line.strip())
    return count - (1 if header and count else 0)


def _assert_nothing_lost(data: bytes, result, table, quarantined: int, header: bool) -> None:
    landed = table.num_rows if table is not None else 0
    assert result.status == "ingested", result.error
    assert result.rows_read == _lines(data, header)
    assert result.rows_read == result.rows_landed + result.rows_quarantined + result.rows_duplicate
    assert landed == result.rows_landed and quarantined == result.rows_quarantined


KNOWN_PHOTOS = (1, 2, 3)
PHOTOS = "".join(
    json.dumps(
        {
            "photo_id": i,
            "owner_id": 10 + i,
            "posted_at": "2026-09-30T08:00:00Z",
            "width": 1080,
            "height": 1350,
        }
    )
    + "\n"
    for i in KNOWN_PHOTOS
).encode()

# an event that satisfies the contract: it must land (or be counted a duplicate of its id)
good_event = st.builds(
    lambda i, kind, when, user, photo: json.dumps(
        {"event_id": f"e{i}", "event_type": kind, "ts": when, "user_id": user, "photo_id": photo}
    ),
    st.integers(0, 50),
    st.sampled_from(["view", "like", "comment", "share", "save", "follow"]),
    st.sampled_from(["2026-10-01T10:00:00Z", "2026-10-01T10:00:00+02:00"]),
    st.integers(0, 10**6),
    st.sampled_from(KNOWN_PHOTOS),
)
# an event that may break the contract anywhere: type, time, user, photo
maybe_bad_event = st.builds(
    lambda i, kind, when, user, photo: json.dumps(
        {"event_id": f"b{i}", "event_type": kind, "ts": when, "user_id": user, "photo_id": photo}
    ),
    st.integers(0, 50),
    st.sampled_from(["view", "like", "follow", "share", "bogus"]),
    st.sampled_from(["2026-10-01T10:00:00Z", "2026-10-01T10:00:00+02:00", "yesterday", ""]),
    st.one_of(st.integers(-5, 10**6), st.text(max_size=5), st.none()),
    st.sampled_from([1, 99, None]),
)
junk_line = st.one_of(
    st.text(max_size=40).map(lambda t: t.replace("\n", " ").replace("\r", " ")),
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" ").decode("latin-1")),
    good_event.map(lambda e: e[: len(e) // 2]),  # cut off mid-record
    st.just("{}"),
    st.just("[1, 2, 3]"),
    st.just('{"event_id": "x"}{"event_id": "y"}'),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(good_event, min_size=1, max_size=10),
    st.lists(st.one_of(maybe_bad_event, junk_line), max_size=20),
    st.randoms(use_true_random=False),
)
@example(  # found by this test: a skipped blank line and a two-record line cancelled out
    good=[
        '{"event_id": "e0", "event_type": "view", "ts": "2026-10-01T10:00:00Z", '
        '"user_id": 0, "photo_id": 1}'
    ],
    other=["", '{"event_id": "x"}{"event_id": "y"}'],
    order=random.Random(0),
).via("discovered failure")
def test_fuzzed_json_lines_are_landed_or_quarantined_never_lost(
    good: list[str], other: list[str], order
) -> None:
    lines = good + other
    order.shuffle(lines)
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    result, table, quarantined = _ingest_one(
        "events", "events-2026-10-01.jsonl", data, photos=PHOTOS
    )
    _assert_nothing_lost(data, result, table, quarantined, header=False)
    landed = set(table.column("event_id").to_pylist())
    assert {json.loads(line)["event_id"] for line in good} <= landed  # good rows really land


csv_field = st.one_of(
    # text Python can encode as UTF-8 (no lone surrogates); raw bad bytes are tested apart
    st.text(
        alphabet=st.characters(exclude_characters="\n\r", exclude_categories=("Cs",)),
        max_size=12,
    ),
    st.sampled_from(
        ["1", "2026-01-01T00:00:00Z", "US", "a@b.example", "true", "1990", '"q,uoted"']
    ),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(csv_field, min_size=1, max_size=9), min_size=1, max_size=25))
def test_fuzzed_csv_rows_are_landed_or_quarantined_never_lost(rows: list[list[str]]) -> None:
    body = "\n".join(",".join(row) for row in rows)
    data = (USERS_HEADER + "\n" + body + "\n").encode()
    if _lines(data, header=True) == 0:
        return
    result, table, quarantined = _ingest_one("users", "users.csv", data)
    _assert_nothing_lost(data, result, table, quarantined, header=True)


def test_a_csv_header_that_disagrees_with_its_rows_quarantines_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    landing = tmp_path / "landing"
    (landing / "users").mkdir(parents=True)
    swapped = USERS_HEADER.replace("country,email", "email,country")  # rows keep the old order
    rows = [
        f"{i},2025-04-05T09:39:19Z,US,user{i}@example.com,User {i},1980,false" for i in range(12)
    ]
    (landing / "users" / "users.csv").write_text(swapped + "\n" + "\n".join(rows) + "\n")
    assert main(["ingest", str(landing), "--lake", str(tmp_path / "lake")]) == 0
    out = capsys.readouterr().out
    assert "12 of 12 rows of" in out and "does its header or layout match the users contract" in out
    quarantine = bronze(tmp_path / "lake", "_quarantine").to_pylist()
    assert len(quarantine) == 12 and {q["column"] for q in quarantine} == {"country"}
    assert quarantine[0]["raw"] == rows[0]  # the row as it was, to fix and replay


def test_a_header_missing_a_required_column_refuses_the_file_by_name(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    (landing / "users").mkdir(parents=True)
    (landing / "users" / "users.csv").write_text("user_id,country\n1,US\n")
    report = ingest(str(landing), str(tmp_path / "lake"), now=NIGHT)
    (result,) = report.files
    assert result.status == "failed"
    assert "users.csv: header lacks required column(s) signup_at" in result.error
    assert "header has: user_id, country" in result.error


def test_latin1_rows_are_quarantined_as_invalid_utf8_and_the_rest_lands(tmp_path: Path) -> None:
    text = (
        USERS_HEADER + "\n"
        "1,2025-04-05T09:39:19Z,ES,jose@example.com,José Núñez,1977,false\n"
        "2,2025-04-05T09:39:19Z,ES,ana@example.com,Ana,1980,true\n"
    )
    result, table, quarantined = _ingest_one("users", "users.csv", text.encode("latin-1"))
    assert (result.rows_read, table.num_rows, quarantined) == (2, 1, 1)
    assert result.reasons == {"invalid_utf8": 1}


def test_a_utf16_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    (landing / "users").mkdir(parents=True)
    (landing / "users" / "users.csv").write_bytes((USERS_HEADER + "\n1,x\n").encode("utf-16"))
    report = ingest(str(landing), str(tmp_path / "lake"), now=NIGHT)
    (result,) = report.files
    assert result.status == "failed"
    assert result.error.endswith("users.csv: header is not UTF-8 text; re-export the file as UTF-8")


def test_links_out_of_the_landing_folder_are_refused_unread(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "creds").mkdir(parents=True)
    (outside / "passwd").write_text("root:x:0:0:SECRET-PASSWD-LINE:/root:/bin/bash\n")
    (outside / "creds" / "key.jsonl").write_text('{"aws_secret": "SECRET-CREDENTIAL"}\n')
    landing = tmp_path / "landing"
    (landing / "users").mkdir(parents=True)
    (landing / "users" / "users.csv").write_text(
        USERS_HEADER + "\n1,2026-01-01T00:00:00Z,US,a@b.example,Ann,1990,true\n"
    )
    (landing / "users" / "passwd.csv").symlink_to(outside / "passwd")
    (landing / "events").symlink_to(outside / "creds", target_is_directory=True)
    (landing / "users" / "again.csv").symlink_to(landing / "users" / "users.csv")  # inside: ok
    lake = tmp_path / "lake"
    report = ingest(str(landing), str(lake), now=NIGHT)
    refused = {f.source_file.rsplit("/", 2)[-2] + "/" + f.source_file.rsplit("/", 1)[-1]: f
               for f in report.failed}  # fmt: skip
    assert set(refused) == {"users/passwd.csv", "events/key.jsonl"}
    for result in refused.values():
        assert "a link to a file outside the landing folder" in result.error
        assert result.rows_read == 0 and result.content_sha256 == ""
    assert bronze(lake, "users").num_rows == 1  # the real file landed; its link inside skipped
    for path in lake.rglob("*"):
        if path.is_file():
            assert b"SECRET-" not in path.read_bytes(), path


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("users/nested.csv", None, None),  # replaced below: a JSON line cannot be a CSV file
        ("users/twice.csv", USERS_HEADER + ",country\n1,x\n", "header names column(s) country"),
        ("users/cr.csv", USERS_HEADER + "\r1,2026-01-01T00:00:00Z,US\r", "carriage return"),
        ("users/markup.csv", "[/]user_id,[bold]root:x:0:\n1\n", "header lacks required"),
    ],
)
def test_one_files_content_never_stops_the_run_or_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content, expected
) -> None:
    landing = tmp_path / "landing"
    (landing / "users").mkdir(parents=True)
    (landing / "users" / "good.csv").write_text(
        USERS_HEADER + "\n7,2026-01-01T00:00:00Z,US,g@b.example,Gus,1990,true\n"
    )
    if content is None:  # 200,000 '[' on one JSON line: too deep for any parser's stack
        (landing / "events").mkdir()
        name, expected = "events/deep.jsonl", None
        (landing / name).write_text("[" * 200_000 + "\n")
    else:
        (landing / name).write_text(content)
    args = ["ingest", str(landing), "--lake", str(tmp_path / "lake")]
    code = main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert bronze(tmp_path / "lake", "users").num_rows == 1  # the good file landed
    if expected is None:  # the line is quarantined, the file is not refused
        assert code == 0
        quarantine = bronze(tmp_path / "lake", "_quarantine").to_pylist()
        assert [(q["reason_code"], q["line_number"]) for q in quarantine] == [
            ("malformed_record", 1)
        ]
        assert "nested too deeply" in quarantine[0]["reason"]
    else:
        assert code == 1
        assert expected in err.replace("\n", "") and name.split("/")[1] in err
    assert "❌" not in out + err  # ':x:' is text, not an emoji
    if "markup" in name:
        assert "header has: [/]user_id, [bold]root:x:0:" in err.replace("\n", "")  # as it is


def _event(i: int, **extra) -> dict:
    return {"event_id": f"e{i}", "event_type": "view", "ts": "2026-10-01T10:00:00Z",
            "user_id": 1, "photo_id": 1, **extra}  # fmt: skip


def test_a_line_past_the_bound_is_quarantined_as_it_streams_past(tmp_path: Path) -> None:
    """A few hundred KB of gzip can hold a line of hundreds of MB: it must not be held."""
    landing = tmp_path / "landing"
    (landing / "events").mkdir(parents=True)
    (landing / "photos").mkdir()
    (landing / "photos" / "p.jsonl").write_bytes(PHOTOS)
    sizes = {}
    with gzip.open(landing / "events" / "e.jsonl.gz", "wb", compresslevel=1) as sink:
        sink.write(json.dumps(_event(1)).encode() + b"\n")
        for line, (letter, length) in ((2, (b"a", 300_000_000)), (3, (b"b", 20_000_000))):
            head = json.dumps(_event(line, comment_text="")).encode()[:-2]  # ..."comment_text": "
            sink.write(head)
            for _ in range(length // 1_000_000):  # streamed: this process never holds it
                sink.write(letter * 1_000_000)
            sink.write(b'"}\n')
            sizes[line] = len(head) + length + 2
        sink.write(json.dumps(_event(4)).encode() + b"\n")
        long_but_read = json.dumps(_event(6, comment_text="c" * 2_000_000)).encode()
        sink.write(b'{"event_id": "e5", broken\n' + long_but_read + b"\n")  # slow path
    script = textwrap.dedent(f"""
        from datetime import datetime
        from pathlib import Path
        from lakehouse.ingest import ingest
        report = ingest({str(landing)!r}, {str(tmp_path / "lake")!r},
                        now=datetime.fromisoformat({NIGHT.isoformat()!r}))
        assert report.ok, report.failed
        status = Path("/proc/self/status").read_text()  # this process's own peak, not the
        print(int(status.split("VmHWM:")[1].split()[0]) // 1024)  # parent's it forked from
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    peak_mb = int(run.stdout.split()[-1])
    assert peak_mb < 500, f"peak RSS {peak_mb} MB for a 300 MB line"  # 1.66 GB at 100 MB before
    events = bronze(tmp_path / "lake", "events").column("event_id").to_pylist()
    assert sorted(events) == ["e1", "e4"]
    quarantine = bronze(tmp_path / "lake", "_quarantine").to_pylist()
    found = {q["line_number"]: q for q in quarantine}
    assert set(found) == {2, 3, 5, 6}
    for line, size in sizes.items():  # longer than a read: streamed past, its head kept
        assert found[line]["reason_code"] == "oversized_value"
        assert f"line is {size:,} bytes, longer than the 16,777,216" in found[line]["reason"]
        assert len(found[line]["raw"]) <= 200 and found[line]["raw"].startswith('{"event_id"')
    assert found[5]["reason_code"] == "malformed_record"
    # a 2 MB line on the line-by-line path: judged by the contract, not "straddling" blocks
    assert found[6]["reason_code"] == "oversized_value"
    assert found[6]["reason"] == "column comment_text: 2000000 bytes, more than the limit of 2200"


def test_misleading_reasons_are_named_for_what_they_are(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    for folder in ("events", "embeddings", "photos"):
        (landing / folder).mkdir(parents=True)
    (landing / "photos" / "p.jsonl").write_bytes(PHOTOS)
    (landing / "events" / "blank.jsonl").write_text("\n\n   \n\n")
    (landing / "events" / "_partial.jsonl").write_text(json.dumps(_event(9)) + "\n")
    (landing / "events" / ".upload.jsonl").write_text(json.dumps(_event(8)) + "\n")
    vector = [0.5] * 64
    with_null = [*vector[:10], None, *vector[11:]]
    embeddings = pa.table(
        {
            # uint64: one id past int64's range, so Arrow cannot cast the block whole
            "photo_id": pa.array([1, 2**63 + 5, 3], pa.uint64()),
            "model_version": ["clf-v3"] * 3,
            "embedding": pa.array([vector, vector, with_null], pa.list_(pa.float64())),
        }
    )
    pq.write_table(embeddings, landing / "embeddings" / "e.parquet")
    report = ingest(str(landing), str(tmp_path / "lake"), now=NIGHT)
    blank = next(f for f in report.files if f.source_file.endswith("blank.jsonl"))
    assert blank.status == "failed" and "no records, only blank lines" in blank.error
    assert sorted(report.ignored) == [
        "events/.upload.jsonl (hidden: a name starting with . or _)",
        "events/_partial.jsonl (hidden: a name starting with . or _)",
    ]
    landed = bronze(tmp_path / "lake", "photo_embeddings").column("photo_id").to_pylist()
    assert landed == [1]  # one bad id rejects its row, not its block
    quarantine = {q["line_number"]: q for q in bronze(tmp_path / "lake", "_quarantine").to_pylist()}
    assert quarantine[2]["reason_code"] == "wrong_type"
    assert quarantine[3]["reason_code"] == "bad_embedding"
    assert quarantine[3]["reason"] == "column embedding: contains a null value at position 10"
