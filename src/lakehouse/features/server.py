"""A small HTTP endpoint over the online store: what an app calls (``lakehouse features
serve``). JSON in and out, standard library only, shaped after Feast's feature server:

- ``POST /get-online-features`` ``{"view": "owner", "keys": [17, 42]}`` -> ``{"view",
  "fill": {as_of, invocation_id, shard_version, ...}, "features": {column: [values]}}``
- ``POST /predict`` ``{"photo_ids": [1001]}`` -> ``{"photo_ids", "likes_7d": [...], "fill"}``
  (when started with a trained model)
- ``GET /health`` -> each view's latest fill; 503 when one is stale.

Errors are JSON ``{"error": "<one line>"}``: 400 for a malformed request, 404 for unknown
keys or views, 503 for a stale store.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lakehouse.features.online import (
    DEFAULT_MAX_AGE,
    FeatureError,
    StaleStore,
    UnknownKeys,
    get_online_features,
    photo_request,
    store_for,
)
from lakehouse.features.store import FillRecord, OnlineStore


class FeatureServer(ThreadingHTTPServer):
    """The endpoint on ``(host, port)`` (port 0: a free one, see ``server_address``)."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        store: str | OnlineStore | None = None,
        *,
        model: str | Path | None = None,
        max_age: timedelta | None = DEFAULT_MAX_AGE,
    ) -> None:
        self.store = store_for(store)
        self.max_age = max_age
        self.lock = threading.Lock()  # one store connection, one lookup at a time
        self.model = None
        if model is not None:
            from lakehouse.loader.training import load_popularity_model

            self.model = load_popularity_model(model)
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def server_close(self) -> None:
        super().server_close()
        self.store.close()


class _Handler(BaseHTTPRequestHandler):
    server: FeatureServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: an app's lookups are not worth a line each."""

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/health":
            return self._reply(404, {"error": f"no such endpoint: GET {self.path}"})
        with self.server.lock:
            records = self.server.store.views()
        fills = {r.view: _fill(r) for r in records}
        stale = []
        if self.server.max_age is not None:
            now = datetime.now(UTC)
            stale = [r.view for r in records if now - r.as_of_time > self.server.max_age]
        status = 503 if stale or not records else 200
        self._reply(status, {"ok": status == 200, "stale": stale, "fills": fills})

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as error:
            return self._reply(400, {"error": f"not a JSON request: {error}"})
        path = self.path.rstrip("/")
        try:
            if path == "/get-online-features":
                return self._features(body)
            if path == "/predict":
                return self._predict(body)
        except UnknownKeys as error:
            return self._reply(404, {"error": str(error), "missing": error.missing})
        except StaleStore as error:
            return self._reply(503, {"error": str(error)})
        except FeatureError as error:
            return self._reply(404, {"error": str(error)})
        self._reply(404, {"error": f"no such endpoint: POST {self.path}"})

    def _features(self, body: dict[str, Any]) -> None:
        view, keys = body.get("view"), body.get("keys")
        if not isinstance(view, str) or not _int_list(keys):
            return self._reply(
                400, {"error": 'expected {"view": "<name>", "keys": [<integer>, ...]}'}
            )
        with self.server.lock:
            found = get_online_features(
                view, keys, store=self.server.store, max_age=self.server.max_age
            )
        self._reply(200, {"view": view, "fill": _fill(found.record), "features": found.to_dict()})

    def _predict(self, body: dict[str, Any]) -> None:
        from lakehouse.loader.training import predict_likes_7d

        if self.server.model is None:
            return self._reply(
                404, {"error": "no model: start the server with --model <checkpoint>"}
            )
        photo_ids = body.get("photo_ids")
        if not _int_list(photo_ids):
            return self._reply(400, {"error": 'expected {"photo_ids": [<integer>, ...]}'})
        with self.server.lock:
            columns = photo_request(photo_ids, store=self.server.store, max_age=self.server.max_age)
            record = self.server.store.record("owner")
        likes = predict_likes_7d(self.server.model, columns)
        self._reply(
            200,
            {
                "photo_ids": photo_ids,
                "likes_7d": likes,
                "fill": _fill(record) if record else None,
            },
        )

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, default=_json_default).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _int_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(k, int) and not isinstance(k, bool) for k in value)
    )


def _fill(record: FillRecord) -> dict[str, Any]:
    """What a fill came from, as its record says (less the schema, which is the client's
    `features` themselves)."""
    return {name: value for name, value in asdict(record).items() if name != "schema"}


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")
