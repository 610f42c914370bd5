"""photo_popularity_training in pandas: the baseline the dbt/DuckDB build is compared with.

The same rules as the dbt models (committed batches, dedupe, label window, point-in-time
owner features with merge_asof, caption weak labels, md5 split), written the way a pandas
user would. bench_warehouse.py checks its output against DuckDB's before timing counts.
"""

from __future__ import annotations

import csv
import hashlib
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from lakehouse.storage import read_delta

REPO = Path(__file__).resolve().parents[1]
WEEK, DAY = pd.Timedelta(days=7), pd.Timedelta(hours=24)


def _bronze(lake: str, table: str, columns: list[str], committed: set[str]) -> pd.DataFrame:
    lineage = ["_batch_id", "_ingested_at", "_source_file", "_source_line"]
    frame = read_delta(f"{lake}/bronze/{table}", columns=columns + lineage).to_pandas()
    frame = frame[frame["_batch_id"].isin(committed)]
    return frame.sort_values(lineage[1:], kind="stable")


def training_table(lake: str, threshold: int = 10, model_version: str = "clf-v3") -> pd.DataFrame:
    log = read_delta(f"{lake}/bronze/_ingest_log", columns=["batch_id", "status"]).to_pandas()
    committed = set(log.loc[log.status == "ingested", "batch_id"])
    with open(REPO / "seeds" / "event_types.csv", newline="") as handle:
        weights = {r["event_type"]: int(r["engagement_weight"]) for r in csv.DictReader(handle)}
    with open(REPO / "seeds" / "caption_labeling_rules.csv", newline="") as handle:
        rules = list(csv.DictReader(handle))

    events = _bronze(
        lake, "events", ["event_id", "event_type", "ts", "user_id", "photo_id"], committed
    )
    events = events.drop_duplicates("event_id")
    events = events[events.event_type.isin(weights)]
    photos = _bronze(lake, "photos", ["photo_id", "owner_id", "posted_at", "caption"], committed)
    photos = photos.drop_duplicates("photo_id")[["photo_id", "owner_id", "posted_at", "caption"]]
    users = _bronze(lake, "users", ["user_id", "signup_at"], committed).drop_duplicates("user_id")
    embeddings = _bronze(
        lake, "photo_embeddings", ["photo_id", "model_version", "embedding"], committed
    )
    embeddings = embeddings[embeddings.model_version == model_version].drop_duplicates("photo_id")

    # labels: events in [posted_at, posted_at + 7 days)
    joined = events.merge(photos[["photo_id", "posted_at"]], on="photo_id")
    week = joined[(joined.ts >= joined.posted_at) & (joined.ts < joined.posted_at + WEEK)]
    likes = week[week.event_type == "like"]
    labels = (
        pd.DataFrame(
            {
                "likes_7d": likes.groupby("photo_id").size(),
                "likes_24h": likes[likes.ts < likes.posted_at + DAY].groupby("photo_id").size(),
                "engagement_score_7d": week.event_type.map(weights).groupby(week.photo_id).sum(),
            }
        )
        .reindex(photos.photo_id)
        .fillna(0)
        .astype("int64")
    )
    horizon = events.ts.max()
    mature = photos[photos.posted_at + WEEK <= horizon].copy()

    # owner features strictly before posting
    received = events[events.event_type.isin(["like", "follow"])].merge(
        photos[["photo_id", "owner_id"]], on="photo_id"
    )
    timeline = (
        received.assign(like=received.event_type == "like", follow=received.event_type == "follow")
        .groupby(["owner_id", "ts"])[["like", "follow"]]
        .sum()
        .groupby(level="owner_id")
        .cumsum()
        .reset_index()
        .rename(columns={"like": "owner_likes_received", "follow": "owner_followers"})
    )
    by_time = photos.sort_values("posted_at")
    pit = pd.merge_asof(
        by_time,
        timeline.sort_values("ts"),
        left_on="posted_at",
        right_on="ts",
        by="owner_id",
        allow_exact_matches=False,
    )
    pit[["owner_likes_received", "owner_followers"]] = (
        pit[["owner_likes_received", "owner_followers"]].fillna(0).astype("int64")
    )
    pit["owner_prior_photos"] = (
        pit.groupby("owner_id").posted_at.rank(method="min").astype("int64") - 1
    )
    daily = events.assign(day=events.ts.dt.floor("D")).groupby(["user_id", "day"]).size()
    daily = daily.rename("events").reset_index()
    windows = pit[["photo_id", "owner_id", "posted_at"]].merge(
        daily, left_on="owner_id", right_on="user_id"
    )
    posted_day = windows.posted_at.dt.floor("D")
    in_window = (windows.day < posted_day) & (windows.day >= posted_day - pd.Timedelta(days=30))
    recent = windows[in_window].groupby("photo_id").events.sum().rename("owner_events_30d")
    pit = pit.merge(recent, on="photo_id", how="left").merge(
        users, left_on="owner_id", right_on="user_id", how="left"
    )
    pit["owner_events_30d"] = pit.owner_events_30d.fillna(0).astype("int64")
    pit["owner_account_age_days"] = (
        pit.posted_at.dt.floor("D") - pit.signup_at.dt.floor("D")
    ).dt.days

    # caption weak labels: majority vote, abstain on ties
    warnings.filterwarnings("ignore", "This pattern is interpreted as a regular expression")
    caption = photos.set_index("photo_id").caption.fillna("")
    popular = sum(
        caption.str.contains(r["pattern"], regex=True).astype(int)
        for r in rules
        if r["label"] == "popular"
    )
    not_popular = sum(
        caption.str.contains(r["pattern"], regex=True).astype(int)
        for r in rules
        if r["label"] == "not_popular"
    )
    weak = pd.Series(
        np.where(
            popular > not_popular, "popular", np.where(not_popular > popular, "not_popular", None)
        ),
        index=caption.index,
        name="weak_label",
    )

    bucket = mature.photo_id.map(
        lambda i: int(hashlib.md5(str(i).encode()).hexdigest()[:8], 16) % 100
    )
    mature["split"] = np.where(bucket < 80, "train", np.where(bucket < 90, "val", "test"))
    table = (
        mature[["photo_id", "split", "posted_at"]]
        .merge(
            pit[
                [
                    "photo_id",
                    "owner_account_age_days",
                    "owner_prior_photos",
                    "owner_likes_received",
                    "owner_followers",
                    "owner_events_30d",
                ]
            ],
            on="photo_id",
        )
        .merge(labels, left_on="photo_id", right_index=True)
        .merge(weak, left_on="photo_id", right_index=True)
        .merge(embeddings[["photo_id", "embedding"]], on="photo_id")
    )
    table["is_popular"] = table.likes_7d >= threshold
    return table
