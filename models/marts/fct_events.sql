{{
    config(
        incremental_strategy='append',
        meta={'key_hash': 'event_id'},
    )
}}

-- One row per event. Incremental: each run appends the events staging loaded since this
-- table's last load (staging holds each event_id once, so nothing is appended twice). When
-- staging was rebuilt alone since then (`--full-refresh --select stg_app__events`), every
-- staged event looks new: the run then appends only the event ids this table does not hold.

with

events as (
    select * from {{ ref('stg_app__events') }} as events
    where {{ loaded_since_last_run('events') }}
    {%- if rebuilt_since_last_run(ref('stg_app__events')) %}
        and not exists (
            select 1 from {{ this }} as held
            where held.event_id = events.event_id
        )
    {%- endif %}
),

photos as (
    select
        photo_id,
        owner_user_id
    from {{ ref('stg_app__photos') }}
),

event_types as (
    select
        event_type,
        is_engagement,
        engagement_weight
    from {{ ref('event_types') }}
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
        cast(events.comment_length as bigint) as comment_length,
        event_types.is_engagement,
        event_types.engagement_weight,
        events.batch_id,
        events.ingested_at,
        {{ build_seq() }} as _build_seq,
        events._key_hash  -- staging's number of the same event_id (macros/keys.sql)
    from events
    inner join event_types on events.event_type = event_types.event_type
    left join photos on events.photo_id = photos.photo_id
)

select * from final
