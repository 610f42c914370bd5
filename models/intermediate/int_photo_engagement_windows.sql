{{
    config(
        unique_key='photo_id',
        incremental_strategy=upsert_strategy(),
    )
}}

-- Engagement each photo got in its first 24 hours and first 7 days: the label.
-- Only events in [posted_at, posted_at + window) count; a photo's label is mature once the
-- data reaches 7 days past its posting.
-- Incremental: a photo's counts only grow (events are appended, each once), so a photo this
-- table holds gets its counts plus those of tonight's events inside its first week; a photo
-- it does not hold yet (new, or late after its events) is counted from all its events; a
-- held photo whose first week the data has just covered gets its flag (the label matures
-- tonight). A caption edit changes no count: the owner and posted_at are the first recorded.

{#- staging's events rebuilt alone since this model last ran: each would look new, and be
    added to counts that hold it already; count every photo again instead -#}
{%- set adds = is_incremental() and not rebuilt_since_last_run(ref('stg_app__events')) %}

with

data_horizon as (
    -- the newest event is no older than tonight's newest: a constant, so DuckDB skips the
    -- row groups of older days instead of reading every event's time
    select max(occurred_at) as observed_until
    from {{ ref('stg_app__events') }}
    where occurred_at >= {{ incremental_newest_from(
        "select cast(max(occurred_at) as " ~ dbt.type_string() ~ ") from "
        ~ ref('stg_app__events') ~ " as events where " ~ loaded_since_last_run('events')
    ) }}
),

{% if adds %}
{%- set counted_sql -%}
    -- photos to count from all their events: those this table does not hold yet, of the
    -- photos and events loaded tonight
    select photo_id from (
        select photo_id from {{ ref('stg_app__photos') }} as photos
        where {{ loaded_since_last_run('photos') }}
        union
        select photo_id from {{ ref('stg_app__events') }} as events
        where {{ loaded_since_last_run('events') }}
    ) as loaded
    where photo_id not in (select held.photo_id from {{ this }} as held)
{%- endset %}
counted as (
    {{ counted_sql }}
),

tonights_events as (
    select events.photo_id, events.event_type, events.occurred_at
    from {{ ref('stg_app__events') }} as events
    where {{ loaded_since_last_run('events') }}
),

held as (
    -- the photos this table holds that change tonight: a new event inside their first week,
    -- or a first week the data has just covered
    select held.*
    from {{ this }} as held
    where
        held.photo_id in (
            select tonights_events.photo_id from tonights_events
            inner join {{ this }} as window_of
                on tonights_events.photo_id = window_of.photo_id
                and tonights_events.occurred_at >= window_of.posted_at
                and tonights_events.occurred_at < {{ dbt.dateadd('day', 7, 'window_of.posted_at') }}
        )
        or (
            not held.is_label_mature
            and {{ dbt.dateadd('day', 7, 'held.posted_at') }}
            <= (select observed_until from data_horizon)
        )
),

photos as (
    select photo_id, posted_at from {{ ref('stg_app__photos') }}
    where photo_id in (select photo_id from counted)
    union all
    select photo_id, posted_at from held
),

events as (
    -- a counted photo's events: none older than the earliest posting among them (a
    -- constant, older row groups skipped); a held photo's: tonight's only
    select photo_id, event_type, occurred_at from {{ ref('stg_app__events') }}
    where photo_id in (select photo_id from counted)
        and occurred_at >= {{ incremental_lower_bound(
            "select cast(min(posted_at) as " ~ dbt.type_string() ~ ") from " ~ ref('stg_app__photos')
            ~ " where photo_id in (" ~ counted_sql ~ ")"
        ) }}
    union all
    select * from tonights_events
    where photo_id in (select photo_id from held)
),
{% else %}
photos as (
    select
        photo_id,
        posted_at
    from {{ ref('stg_app__photos') }}
),

events as (
    select
        photo_id,
        event_type,
        occurred_at
    from {{ ref('stg_app__events') }}
),
{% endif %}

event_types as (
    select
        event_type,
        engagement_weight
    from {{ ref('event_types') }}
),

events_in_first_week as (
    select
        photos.photo_id,
        events.event_type,
        event_types.engagement_weight,
        events.occurred_at < {{ dbt.dateadd('hour', 24, 'photos.posted_at') }} as in_first_day
    from photos
    inner join events
        on
            photos.photo_id = events.photo_id
            and photos.posted_at <= events.occurred_at
            and events.occurred_at < {{ dbt.dateadd('day', 7, 'photos.posted_at') }}
    inner join event_types on events.event_type = event_types.event_type
),

windowed as (
    select
        photo_id,
        count(case when event_type = 'view' and in_first_day then 1 end) as views_24h,
        count(case when event_type = 'like' and in_first_day then 1 end) as likes_24h,
        count(case when event_type = 'view' then 1 end) as views_7d,
        count(case when event_type = 'like' then 1 end) as likes_7d,
        count(case when event_type = 'comment' then 1 end) as comments_7d,
        count(case when event_type = 'share' then 1 end) as shares_7d,
        count(case when event_type = 'save' then 1 end) as saves_7d,
        sum(engagement_weight) as engagement_score_7d
    from events_in_first_week
    group by photo_id
),

final as (
    select
        photos.photo_id,
        photos.posted_at,
        {%- for column in ['views_24h', 'likes_24h', 'views_7d', 'likes_7d', 'comments_7d',
                           'shares_7d', 'saves_7d', 'engagement_score_7d'] %}
        {% if adds %}coalesce(held.{{ column }}, 0) + {% endif -%}
        coalesce(windowed.{{ column }}, 0) as {{ column }},
        {%- endfor %}
        {% if adds %}coalesce(held.likes_7d, 0) + {% endif -%}
        coalesce(windowed.likes_7d, 0) >= {{ var('popular_likes_threshold') }} as is_popular,
        {{ dbt.dateadd('day', 7, 'photos.posted_at') }} <= data_horizon.observed_until
            as is_label_mature,
        {{ build_seq() }} as _build_seq
    from photos
    cross join data_horizon
    left join windowed on photos.photo_id = windowed.photo_id
    {%- if adds %}
    -- the counts held before tonight (none for a photo counted from all its events)
    left join held on photos.photo_id = held.photo_id
    {%- endif %}
)

select * from final
