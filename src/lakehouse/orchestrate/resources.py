"""Where one deployment's data lives, as Dagster configuration: the run config every lakehouse
asset, check, schedule and sensor reads (``resources: lakehouse: config: ...``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field, field_validator, model_validator

from lakehouse.layout import DEFAULT_ROOT, Layout

RESOURCE = "lakehouse"  # the resource key assets ask for


class LakehouseResource(ConfigurableResource):
    """The locations of the landing folder, the lake, the warehouse and the shards (a
    :class:`lakehouse.layout.Layout`), the job's clock, the gate's thresholds and the
    retries for transient storage errors. Unset locations follow ``root`` exactly as the
    ``lakehouse`` commands do (``LAKEHOUSE_LAKE`` and ``LAKEHOUSE_DUCKDB`` included)."""

    root: str = Field(default=str(DEFAULT_ROOT), description="Everything under one folder.")
    landing: str | None = Field(default=None, description="Landing folder or s3:// URI.")
    lake: str | None = Field(default=None, description="The lake (bronze/), local or s3://.")
    warehouse: str | None = Field(default=None, description="The DuckDB warehouse file.")
    shards: str | None = Field(default=None, description="Where shard versions go, or s3://.")
    as_of: str | None = Field(
        default=None,
        description="The job's clock (ISO 8601, UTC when no zone): the gate measures "
        "freshness against it and ingest quarantines later timestamps. Unset: now.",
    )
    allow_future_as_of: bool = Field(
        default=False,
        description="Accept an as_of later than this machine's clock (refused by default).",
    )
    gate_env: str | None = Field(
        default=None, description="Section of expectations/parameters.yml, e.g. prod."
    )
    gate_parameters: str | None = Field(
        default=None, description="A flat YAML file of gate parameters over the section's."
    )
    storage_retries: int = Field(
        default=3, description="Retries of a step after a transient storage error."
    )
    retry_seconds: float = Field(default=30.0, description="Pause before each retry.")

    @field_validator("as_of")
    @classmethod
    def _a_timestamp(cls, value: str | None) -> str | None:
        """A clock that is not ISO 8601 is refused with the run config, before any step."""
        if value:
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(
                    f"as_of must be an ISO 8601 timestamp such as 2026-11-25T06:00:00+00:00, "
                    f"not {value!r}"
                ) from None
        return value

    @model_validator(mode="after")
    def _not_in_the_future(self) -> LakehouseResource:
        """A clock ahead of this machine's (a typo: 2062 for 2026) is refused with the run
        config, before any step, unless allow_future_as_of."""
        self.clock()
        return self

    def layout(self) -> Layout:
        """The deployment's paths, absolute."""
        return (
            Layout.from_root(self.root)
            .override(
                landing=self.landing, lake=self.lake, warehouse=self.warehouse, shards=self.shards
            )
            .resolved()
        )

    def clock(self) -> datetime | None:
        """The job's clock; one later than this machine's is refused unless allowed."""
        from lakehouse.clock import check_as_of

        if not self.as_of:
            return None
        moment = datetime.fromisoformat(self.as_of)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return check_as_of(moment, allow_future=self.allow_future_as_of)

    def parameters_file(self) -> Path | None:
        return Path(self.gate_parameters) if self.gate_parameters else None

    def run_config(self, **changes: Any) -> dict[str, Any]:
        """Run config carrying every field of this resource (with ``changes``): in Dagster,
        run config for a resource replaces its configured values, so a schedule or sensor
        passes them all."""
        fields = {k: v for k, v in {**self.model_dump(), **changes}.items() if v is not None}
        return {"resources": {RESOURCE: {"config": fields}}}
