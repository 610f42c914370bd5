"""When the nightly job runs: a schedule at 06:00 UTC (after the app's nightly dump) and a
sensor that starts it as soon as new files land. Both send the run config of the code
location's :class:`LakehouseResource`, the schedule with its tick as the job's clock."""

import hashlib
import json

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
    sensor,
)

from lakehouse.ingest import IngestError, discover
from lakehouse.orchestrate.resources import LakehouseResource
from lakehouse.storage import is_transient

NIGHTLY_CRON = "0 6 * * *"  # 06:00 UTC, after the app's nightly dump

nightly_job = define_asset_job(
    "nightly",
    selection=AssetSelection.all(),
    description="ingest -> dbt build -> data-quality gate -> export -> materialize, as "
    "`lakehouse run`.",
    tags={"lakehouse/job": "nightly"},
)


@schedule(
    job=nightly_job,
    cron_schedule=NIGHTLY_CRON,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="The nightly job at 06:00 UTC; the tick's time is the job's clock.",
)
def nightly_schedule(
    context: ScheduleEvaluationContext, lakehouse: LakehouseResource
) -> RunRequest:
    as_of = context.scheduled_execution_time.isoformat()
    return RunRequest(run_config=lakehouse.run_config(as_of=as_of), tags={"lakehouse/as_of": as_of})


@sensor(
    job=nightly_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="Starts the nightly job when new files appear in the landing folder "
    "(local or s3://).",
)
def landing_sensor(
    context: SensorEvaluationContext, lakehouse: LakehouseResource
) -> RunRequest | SkipReason:
    """New files are those written after the newest one already seen (the cursor keeps its
    time and the names written at that same time). Ingest skips what bronze already has,
    so a file seen twice is never landed twice."""
    landing = lakehouse.layout().landing
    try:
        files, _ = discover(landing)
    except IngestError as exc:  # no such folder (on S3: no object under the prefix) yet
        return SkipReason(str(exc))
    except OSError as exc:
        if is_transient(exc):
            return SkipReason(f"landing {landing} unreachable, trying again: {exc}")
        raise
    cursor = json.loads(context.cursor) if context.cursor else {"mtime_ns": -1, "names": []}
    since, seen = int(cursor["mtime_ns"]), set(cursor["names"])
    new = [
        f
        for f in files
        if (f.mtime_ns or 0) > since or ((f.mtime_ns or 0) == since and f.uri not in seen)
    ]
    if not new:
        return SkipReason(f"no new files in {landing}")
    newest = max(f.mtime_ns or 0 for f in files)
    context.update_cursor(
        json.dumps(
            {
                "mtime_ns": newest,
                "names": sorted(f.uri for f in files if (f.mtime_ns or 0) == newest),
            }
        )
    )
    names = sorted(f.uri for f in new)
    return RunRequest(
        run_key="landing-" + hashlib.sha256("\n".join(names).encode()).hexdigest()[:16],
        run_config=lakehouse.run_config(),
        tags={"lakehouse/new_files": str(len(names))},
    )
