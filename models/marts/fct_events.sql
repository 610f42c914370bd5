{{
    config(
        materialized='incremental',
        unique_key='event_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
    )
}}

-- One row per event. Incremental by batch: each run adds the events of every committed
-- ingest batch not here yet, however late its ingest completed (a batch whose log commit a
-- rerun finished days later carries its original ingested_at), and a re-run replaces rather
-- than duplicates (unique_key event_id).

with

events as (
    select * from {{ ref('stg_app__events') }}
    {% if is_incremental() %}
    where batch_id not in (select distinct batch_id from {{ this }})
    {% endif %}
),

photos as (
    select photo_id, owner_user_id from {{ ref('stg_app__photos') }}
),

event_types as (
    select event_type, is_engagement, engagement_weight from {{ ref('event_types') }}
),

final as (
    select
        events.event_id,
        events.event_type,
        events.occurred_at,
        cast(events.occurred_at as date) as event_date,
        events.user_id,
        events.photo_id,
        photos.owner_user_id as photo_owner_user_id,
        events.session_id,
        events.device,
        events.dwell_ms,
        events.has_comment,
        events.comment_length,
        event_types.is_engagement,
        event_types.engagement_weight,
        events.batch_id,
        events.ingested_at
    from events
    inner join event_types on event_types.event_type = events.event_type
    left join photos on photos.photo_id = events.photo_id
)

select * from final
