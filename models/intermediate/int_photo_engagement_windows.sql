{{
    config(
        unique_key='photo_id',
        incremental_strategy=upsert_strategy(),
    )
}}

-- Engagement each photo got in its first 24 hours and first 7 days: the label.
-- Only events in [posted_at, posted_at + window) count; a photo's label is mature once the
-- data reaches 7 days past its posting.
-- Incremental: counted again for the photos that are new, got new events (late ones too),
-- or whose first week the data has just covered (the label matures tonight).

with

all_events as (
    select
        photo_id,
        event_type,
        occurred_at
    from {{ ref('stg_app__events') }}
),

data_horizon as (
    select max(occurred_at) as observed_until from all_events
),

{% if is_incremental() %}
{%- set touched_sql -%}
    select photo_id from {{ ref('stg_app__photos') }} as photos
    where {{ loaded_since_last_run('photos') }}
    union
    -- events inside a photo's first week (most events land long after it: no change)
    select events.photo_id
    from {{ ref('stg_app__events') }} as events
    inner join {{ ref('stg_app__photos') }} as photos on photos.photo_id = events.photo_id
    where {{ loaded_since_last_run('events') }}
        and events.occurred_at >= photos.posted_at
        and events.occurred_at < {{ dbt.dateadd('day', 7, 'photos.posted_at') }}
    union
    select held.photo_id from {{ this }} as held
    where not held.is_label_mature
        and {{ dbt.dateadd('day', 7, 'held.posted_at') }}
            <= (select max(occurred_at) from {{ ref('stg_app__events') }})
{%- endset %}
touched as (
    {{ touched_sql }}
),

photos as (
    select photo_id, posted_at from {{ ref('stg_app__photos') }}
    where photo_id in (select photo_id from touched)
),

events as (
    -- a photo's first week starts at its posting, so no event counted tonight is older than
    -- the earliest posting among the touched photos: a constant, older row groups skipped
    select * from all_events
    where photo_id in (select photo_id from touched)
        and occurred_at >= {{ incremental_lower_bound(
            "select cast(min(posted_at) as " ~ dbt.type_string() ~ ") from " ~ ref('stg_app__photos')
            ~ " where photo_id in (" ~ touched_sql ~ ")"
        ) }}
),
{% else %}
photos as (
    select
        photo_id,
        posted_at
    from {{ ref('stg_app__photos') }}
),

events as (
    select * from all_events
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
        coalesce(windowed.views_24h, 0) as views_24h,
        coalesce(windowed.likes_24h, 0) as likes_24h,
        coalesce(windowed.views_7d, 0) as views_7d,
        coalesce(windowed.likes_7d, 0) as likes_7d,
        coalesce(windowed.comments_7d, 0) as comments_7d,
        coalesce(windowed.shares_7d, 0) as shares_7d,
        coalesce(windowed.saves_7d, 0) as saves_7d,
        coalesce(windowed.engagement_score_7d, 0) as engagement_score_7d,
        coalesce(windowed.likes_7d, 0) >= {{ var('popular_likes_threshold') }} as is_popular,
        {{ dbt.dateadd('day', 7, 'photos.posted_at') }} <= data_horizon.observed_until
            as is_label_mature,
        {{ build_seq() }} as _build_seq
    from photos
    cross join data_horizon
    left join windowed on photos.photo_id = windowed.photo_id
)

select * from final
