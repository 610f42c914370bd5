{{
    config(
        unique_key=['user_id', 'activity_date'],
        incremental_strategy=upsert_strategy(),
    )
}}

-- What each user did, per UTC day, as the actor of events. Incremental: the (user, day)
-- pairs that got new events are counted again from all their events (a late event lands
-- in its own day).

{% set events_relation = ref('stg_app__events') %}

with

all_events as (
    select
        user_id,
        event_type,
        occurred_at,
        cast(occurred_at as date) as activity_date
    from {{ events_relation }} as events
    -- the days tonight's events fall on, and later: a late event is a day or two old
    where occurred_at >= {{ incremental_lower_bound(
        "select cast(min(cast(occurred_at as date)) as " ~ dbt.type_string() ~ ") || ' 00:00:00+00' from "
        ~ events_relation ~ " as events where " ~ loaded_since_last_run('events')
    ) }}
),

{% if is_incremental() %}
touched as (
    select distinct user_id, cast(occurred_at as date) as activity_date
    from {{ ref('stg_app__events') }} as events
    where {{ loaded_since_last_run('events') }}
),

events as (
    select all_events.*
    from all_events
    inner join touched using (user_id, activity_date)
),
{% else %}
events as (
    select * from all_events
),
{% endif %}

daily as (
    select
        user_id,
        activity_date,
        count(*) as events,
        count(case when event_type = 'view' then 1 end) as views,
        count(case when event_type = 'like' then 1 end) as likes_given,
        count(case when event_type = 'comment' then 1 end) as comments_given,
        count(case when event_type = 'follow' then 1 end) as follows_given,
        max(occurred_at) as last_event_at,
        {{ build_seq() }} as _build_seq
    from events
    group by user_id, activity_date
)

select * from daily
