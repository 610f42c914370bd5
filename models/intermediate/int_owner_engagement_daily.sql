{{
    config(
        unique_key=['owner_user_id', 'engagement_date'],
        incremental_strategy=upsert_strategy(),
    )
}}

-- The likes and follows each photo owner received, per UTC day, through any of their
-- photos: the owner features' running totals (macros/features.sql) read these days instead
-- of every event ever received, so a night's features cost what the night brought, not the
-- history. Incremental: the (owner, day) pairs tonight touched are counted again from all
-- their events. A pair is touched by an engagement event loaded tonight, or by an event of
-- a photo loaded tonight (a late photo's earlier events, which no owner had counted).

with

{% if is_incremental() %}
{%- set touched_sql -%}
    select photos.owner_user_id, cast(events.occurred_at as date) as engagement_date
    from {{ ref('stg_app__events') }} as events
    inner join {{ ref('stg_app__photos') }} as photos on events.photo_id = photos.photo_id
    where {{ loaded_since_last_run('events') }} and events.event_type in {{ engagement_received_types() }}
    union
    select photos.owner_user_id, cast(events.occurred_at as date)
    from {{ ref('stg_app__events') }} as events
    inner join {{ ref('stg_app__photos') }} as photos on events.photo_id = photos.photo_id
    where {{ loaded_since_last_run('photos') }} and events.event_type in {{ engagement_received_types() }}
{%- endset %}
touched as (
    {{ touched_sql }}
),

events as (
    -- every engagement of the touched days: none older than the oldest touched day, a
    -- constant, so DuckDB skips the row groups of older days
    select events.photo_id, events.event_type, events.occurred_at
    from {{ ref('stg_app__events') }} as events
    where events.event_type in {{ engagement_received_types() }}
        and events.occurred_at >= {{ incremental_lower_bound(
            "select cast(min(engagement_date) as " ~ dbt.type_string() ~ ") || ' 00:00:00+00' from ("
            ~ touched_sql ~ ") as touched"
        ) }}
),
{% else %}
events as (
    select
        photo_id,
        event_type,
        occurred_at
    from {{ ref('stg_app__events') }}
    where event_type in {{ engagement_received_types() }}
),
{% endif %}

received as (
    select
        photos.owner_user_id,
        cast(events.occurred_at as date) as engagement_date,
        events.event_type,
        events.occurred_at
    from events
    inner join {{ ref('stg_app__photos') }} as photos on events.photo_id = photos.photo_id
    {%- if is_incremental() %}
    -- a semi join on the pair: an inner join lets the planner join the days first (each
    -- event with every touched owner of its day)
    where exists (
        select 1 from touched
        where
            touched.owner_user_id = photos.owner_user_id
            and touched.engagement_date = cast(events.occurred_at as date)
    )
    {%- endif %}
),

daily as (
    select
        owner_user_id,
        engagement_date,
        count(case when event_type = 'like' then 1 end) as likes_received,
        count(case when event_type = 'follow' then 1 end) as follows_received,
        max(occurred_at) as last_received_at,
        {{ build_seq() }} as _build_seq
    from received
    group by owner_user_id, engagement_date
)

select * from daily
