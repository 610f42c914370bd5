"""Serving the features the model trained on: an online store the nightly job fills after
the gate, read by key (Feast's shape, built natively: docs/decisions/0014-online-features.md).

>>> from lakehouse.features import get_online_features
>>> owners = get_online_features("owner", [17, 42])   # the embedded store of data/demo
>>> owners.to_dict()["owner_followers"]

The feature views are dbt models declaring ``meta.online``; their SQL is the training set's
own (``macros/features.sql``), evaluated at the night's as_of. Stores: an embedded SQLite file
(default) or Redis (``LAKEHOUSE_ONLINE_STORE=redis://host:port/db``).
"""

from lakehouse.features.online import (
    DEFAULT_MAX_AGE,
    FeatureError,
    FillReport,
    OnlineFeatures,
    StaleStore,
    UnknownKeys,
    fill_online_store,
    get_online_features,
    photo_request,
)
from lakehouse.features.store import (
    FillRecord,
    OnlineStore,
    RedisStore,
    SqliteStore,
    StoreError,
    open_store,
)

__all__ = [
    "DEFAULT_MAX_AGE",
    "FeatureError",
    "FillRecord",
    "FillReport",
    "OnlineFeatures",
    "OnlineStore",
    "RedisStore",
    "SqliteStore",
    "StaleStore",
    "StoreError",
    "UnknownKeys",
    "fill_online_store",
    "get_online_features",
    "open_store",
    "photo_request",
]
