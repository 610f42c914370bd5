"""Facts every layer agrees on, each stated once: the bronze tables, the event types, the
embedding size. A leaf module (standard library only), so any layer may import it.

The dbt project states two of them for SQL, where Python cannot reach: ``seeds/event_types.csv``
(with each type's engagement weight) and the bronze sources in ``models/staging/*/_*__sources.yml``;
``tests/test_contracts.py`` fails when either disagrees with this module.
"""

from __future__ import annotations

# what the app logs: an event of any other type is quarantined as unaccepted_value
EVENT_TYPES: tuple[str, ...] = ("view", "like", "comment", "share", "save", "follow")

# values per photo embedding (the image classifier's output size)
EMBEDDING_DIM = 64

# bronze tables landed from the app's dumps, in ingest order (photos before the events that
# reference them)
DATA_TABLES: tuple[str, ...] = ("users", "photos", "photo_embeddings", "events")
# ingest's bookkeeping: one row per landing file and run; a batch counts once logged here
INGEST_LOG = "_ingest_log"
# rows ingest refused, with file, line, raw text and reason
QUARANTINE = "_quarantine"
# what dbt reads from bronze, each at a pinned Delta version per build
BRONZE_TABLES: tuple[str, ...] = (*DATA_TABLES, INGEST_LOG)
