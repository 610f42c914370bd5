"""Filling the online store from the warehouse, and reading it by key.

The feature views are the dbt models that declare ``meta.online`` (``view``, ``key``): their
SQL is the training set's own (``macros/features.sql``), evaluated at the night's as_of. A
fill copies each view's table whole, only when the data-quality gate passed the night that
built it and the view's own dbt tests passed: serving never sees data the gate did not pass.
Each fill records the as_of, the dbt invocation and the shard version it came from.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from lakehouse import sql
from lakehouse.features.store import (
    FillRecord,
    OnlineStore,
    StoreError,
    decode_rows,
    encode_schema,
    open_store,
)

# a store whose fill is older than this serves nothing: the job runs nightly, so one missed
# night (24 h after the last as_of, plus half a night's grace) makes it stale
DEFAULT_MAX_AGE = timedelta(hours=36)


class FeatureError(Exception):
    """Features that cannot be served or filled; the message says which and why."""


class UnknownKeys(FeatureError):
    """Keys the view does not hold."""

    def __init__(self, view: str, key: str, missing: list[int], record: FillRecord) -> None:
        shown = ", ".join(str(k) for k in missing[:10]) + (" ..." if len(missing) > 10 else "")
        super().__init__(
            f"feature view {view!r} has no {key} {shown} ({len(missing)} of the keys asked; "
            f"fill {record.fill_id} as of {record.as_of} holds {record.rows} keys)"
        )
        self.missing = missing


class StaleStore(FeatureError):
    """The view's latest fill is older than the bound the reader allows."""


@dataclass(frozen=True)
class OnlineFeatures:
    """The features of a batch of keys from one fill of one view, in the order asked."""

    record: FillRecord
    keys: list[int]
    rows: list[dict[str, Any] | None]  # None: a key the view does not hold (allow_missing)

    @property
    def view(self) -> str:
        return self.record.view

    def to_dict(self) -> dict[str, list[Any]]:
        """Column name -> values, one per key asked (Feast's ``to_dict``); the key first."""
        names = self.record.arrow_schema.names
        return {
            name: [
                key if name == self.record.key else (None if row is None else row.get(name))
                for key, row in zip(self.keys, self.rows, strict=True)
            ]
            for name in names
        }

    def to_arrow(self) -> pa.Table:
        """The batch as a table typed like the view's model in the warehouse."""
        return pa.Table.from_pydict(self.to_dict(), schema=self.record.arrow_schema)


@dataclass
class FillReport:
    store: str
    fills: list[FillRecord] = field(default_factory=list)
    # views whose fill is of a later night than this build's (a replay of an earlier as_of):
    # serving never goes back in time, the later fill stays
    kept: list[FillRecord] = field(default_factory=list)
    seconds: float = 0.0


@contextmanager
def _opened(store: str | OnlineStore | None, *, create: bool = False) -> Iterator[OnlineStore]:
    """``store`` for the length of a call: one given open stays open, one opened here closes."""
    opened = store_for(store, create=create)
    try:
        yield opened
    finally:
        if opened is not store:
            opened.close()


def store_for(store: str | OnlineStore | None, *, create: bool = False) -> OnlineStore:
    """``store`` opened (a URI or path), or the layout's default (``LAKEHOUSE_ONLINE_STORE``,
    else ``data/demo/online/features.sqlite``)."""
    if isinstance(store, OnlineStore):
        return store
    if store is None:
        from lakehouse.layout import Layout

        store = Layout.from_root().online
    return open_store(str(store), create=create)


def get_online_features(
    view: str,
    keys: Sequence[int],
    *,
    store: str | OnlineStore | None = None,
    allow_missing: bool = False,
    max_age: timedelta | None = DEFAULT_MAX_AGE,
    now: datetime | None = None,
) -> OnlineFeatures:
    """The features of ``keys`` in ``view`` (``owner``: by owner_user_id, ``photo``: by
    photo_id), all read from the view's latest fill. A key the view does not hold raises
    :class:`UnknownKeys` naming it (``allow_missing``: its row is None instead); a fill whose
    as_of is more than ``max_age`` before ``now`` (default: this machine's clock) raises
    :class:`StaleStore` (``max_age=None``: never)."""
    with _opened(store) as opened:
        try:
            record, texts = opened.lookup(view, list(keys))
        except StoreError as error:
            raise FeatureError(str(error)) from None
    if max_age is not None:
        age = (now or datetime.now(UTC)) - record.as_of_time
        if age > max_age:
            raise StaleStore(
                f"feature view {view!r} in {opened.uri} is stale: filled as of {record.as_of}, "
                f"{_hours(age)} ago, more than the {_hours(max_age)} allowed; the nightly job "
                "has not filled it since (see its last run), or allow an older fill "
                "(max_age, --max-age-hours)"
            )
    rows = decode_rows(record.arrow_schema, texts)
    missing = [int(k) for k, row in zip(keys, rows, strict=True) if row is None]
    if missing and not allow_missing:
        raise UnknownKeys(view, record.key, missing, record)
    return OnlineFeatures(record, [int(k) for k in keys], rows)


# the views a photo's prediction reads: the photo's own features, then its owner's
PHOTO_VIEW, OWNER_VIEW = "photo", "owner"


def photo_request(
    photo_ids: Sequence[int],
    *,
    store: str | OnlineStore | None = None,
    max_age: timedelta | None = DEFAULT_MAX_AGE,
    now: datetime | None = None,
) -> dict[str, list[Any]]:
    """What a popularity prediction for ``photo_ids`` reads, as columns (name -> one value
    per photo): the photo's features (view ``photo``) and its owner's at the night's as_of
    (view ``owner``, by the photo's owner_user_id), from one store."""
    with _opened(store) as opened:
        photos = get_online_features(
            PHOTO_VIEW, photo_ids, store=opened, max_age=max_age, now=now
        ).to_dict()
        owners = get_online_features(
            OWNER_VIEW, photos["owner_user_id"], store=opened, max_age=max_age, now=now
        ).to_dict()
    shared = set(photos) & set(owners)
    return {**photos, **{k: v for k, v in owners.items() if k not in shared}}


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} h"


def fill_online_store(
    warehouse: str | Path,
    quality: str | Path,
    *,
    store: str | OnlineStore,
    shards: str | None = None,
    project: Path | None = None,
    now: datetime | None = None,
) -> FillReport:
    """Copy every feature view (the models declaring ``meta.online``) from ``warehouse`` into
    ``store``, each whole and all-or-nothing; a view the store holds for a later as_of (this
    build replayed an earlier night) keeps that fill (``FillReport.kept``). Refused, leaving
    the store as it was, unless the data-quality gate's latest run (in ``quality``) passed
    and validated the very dbt invocation that built the views, and each view's dbt tests
    passed in that build.
    ``shards``: where the training shards are published (their latest version is recorded
    with the fill)."""
    from lakehouse.export import latest_version
    from lakehouse.quality import GateRecord
    from lakehouse.warehouse import (
        connect,
        dbt_artifacts,
        model_build,
        model_meta,
        online_models,
        project_dir,
        test_verdict,
    )

    started = time.perf_counter()
    project = project or project_dir()
    models = online_models(dbt_artifacts(project) / "manifest.json")
    if not models:
        raise FeatureError(
            "no feature views: no dbt model declares meta.online (models/marts/_marts__models.yml)"
        )
    try:
        gate = GateRecord.read(Path(quality))
    except ValueError as error:
        raise FeatureError(f"online store not filled: {error}") from None
    if gate is None:
        raise FeatureError(
            f"online store not filled: no data-quality gate result in {quality}; serving "
            "never sees data the gate did not pass (run `lakehouse validate` first)"
        )
    if not gate.passed:
        blocked = ", ".join(sorted(t for t, v in gate.tables.items() if not v.passed))
        raise FeatureError(
            f"online store not filled: the data-quality gate blocked the night (run "
            f"{gate.run_id}: {blocked}); the store keeps its previous fill"
        )
    validated = {v.dbt_invocation_id for v in gate.tables.values() if v.dbt_invocation_id}
    shard_version = None
    if shards is not None:
        from lakehouse.job import DEFAULT_MODEL

        latest = latest_version(shards, DEFAULT_MODEL)
        shard_version = latest[1].version if latest else None
    con = connect(warehouse, project)
    try:
        with _opened(store, create=True) as opened:
            report = FillReport(opened.uri)
            for model in models:
                meta = (model_meta(project, model) or {}).get("online") or {}
                view, key = str(meta.get("view") or model), str(meta.get("key") or "")
                build = model_build(con, model)
                if build is None:
                    raise FeatureError(f"online store not filled: {model} was never built")
                if build.invocation_id not in validated:
                    raise FeatureError(
                        f"online store not filled: {model} was built by dbt invocation "
                        f"{build.invocation_id}, which the latest gate run ({gate.run_id}) "
                        "did not validate; run `lakehouse validate` on this build first"
                    )
                verdict = test_verdict(con, model, build.invocation_id)
                if not verdict.passed:
                    raise FeatureError(
                        f"online store not filled: {model}'s dbt tests did not pass in its "
                        f"build ({build.invocation_id}): " + "; ".join(verdict.problems)
                    )
                relation = sql.identifier(model)
                schema = con.execute(f"select * from {relation} limit 0").to_arrow_table().schema
                if key not in schema.names:
                    raise FeatureError(
                        f"feature view {view!r}: its key {key!r} is not a column of {model} "
                        "(meta.online.key in its dbt YAML)"
                    )
                rows, as_of = con.execute(
                    f"select count(*), min(as_of) from {relation}"
                    if "as_of" in schema.names
                    else f"select count(*), null from {relation}"
                ).fetchone()
                # the instant the view's SQL evaluated the features at (the night's as_of)
                as_of = as_of or build.as_of or (now or datetime.now(UTC))
                current = opened.record(view)
                if current is not None and current.as_of_time > as_of:
                    report.kept.append(current)
                    continue
                record = FillRecord(
                    view=view,
                    model=model,
                    key=key,
                    fill_id=1 if current is None else current.fill_id + 1,
                    as_of=as_of.astimezone(UTC).isoformat(),
                    invocation_id=build.invocation_id,
                    shard_version=shard_version,
                    filled_at=(now or datetime.now(UTC)).astimezone(UTC).isoformat(),
                    rows=int(rows),
                    schema=encode_schema(schema),
                )
                # each row as DuckDB's JSON of it, streamed (floats exact, instants in UTC)
                cursor = con.execute(
                    f"select {sql.identifier(key)}, cast(to_json(t) as varchar) "
                    f"from {relation} as t"
                )
                opened.write(record, _batches(cursor))
                report.fills.append(record)
    except StoreError as error:
        raise FeatureError(str(error)) from None
    finally:
        con.close()
    report.seconds = time.perf_counter() - started
    return report


def _batches(cursor: Any) -> Iterator[tuple[int, str]]:
    while rows := cursor.fetchmany(10_000):
        yield from rows
