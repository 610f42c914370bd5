{{
    config(
        unique_key='photo_id',
        incremental_strategy=upsert_strategy(),
    )
}}

-- The photo owner's features as they were just before the photo was posted.
-- Point in time: only data strictly before posted_at is used, so training sees what serving
-- would have seen. features_as_of is the newest event timestamp the features used.
-- Incremental: what arrived tonight can only change the features of photos posted after it
-- (a late like, a late photo, the owner's own late activity) or of an owner who just
-- arrived; those photos are computed again from their owners' whole history.

with

{% if is_incremental() %}
changes as (
    -- (owner, since): the owner's photos posted at or after `since` may change
    select owner_user_id, posted_at as since
    from {{ ref('stg_app__photos') }} as photos
    where {{ loaded_since_last_run('photos') }}
    union all
    select photos.owner_user_id, events.occurred_at
    from {{ ref('stg_app__events') }} as events
    inner join {{ ref('stg_app__photos') }} as photos on photos.photo_id = events.photo_id
    where {{ loaded_since_last_run('events') }} and events.event_type in ('like', 'follow')
    union all
    select activity.user_id, cast(activity.activity_date as {{ timestamp_tz() }})
    from {{ ref('int_user_activity_daily') }} as activity
    where {{ loaded_since_last_run('activity') }}
    union all
    select users.user_id, {{ timestamp_literal('-infinity') }}
    from {{ ref('stg_app__users') }} as users
    where {{ loaded_since_last_run('users') }}
),

owners as (
    select owner_user_id, min(since) as since from changes group by owner_user_id
),

photos as (
    -- the photos whose features are computed tonight
    select all_photos.photo_id, all_photos.owner_user_id, all_photos.posted_at
    from {{ ref('stg_app__photos') }} as all_photos
    inner join owners
        on owners.owner_user_id = all_photos.owner_user_id
        and all_photos.posted_at >= owners.since
),

owner_photos as (
    -- every photo of their owners: the running totals and ranks need all of them
    select photo_id, owner_user_id, posted_at from {{ ref('stg_app__photos') }}
    where owner_user_id in (select owner_user_id from photos)
),
{% else %}
owner_photos as (
    select
        photo_id,
        owner_user_id,
        posted_at
    from {{ ref('stg_app__photos') }}
),

photos as (
    select * from owner_photos
),
{% endif %}

users as (
    select
        user_id,
        signup_at,
        is_verified,
        country_code
    from {{ ref('stg_app__users') }}
),

engagement_received as (
    -- likes and follows the owner received through any of their photos
    select
        photos.owner_user_id,
        events.occurred_at,
        events.event_type
    from {{ ref('stg_app__events') }} as events
    inner join owner_photos as photos on events.photo_id = photos.photo_id
    where events.event_type in ('like', 'follow')
),

owner_timeline as (
    -- one row per (owner, instant) with running totals up to and including that instant
    select distinct
        owner_user_id,
        occurred_at,
        count(case when event_type = 'like' then 1 end) over running as likes_received_total,
        count(case when event_type = 'follow' then 1 end) over running as followers_total
    from engagement_received
    window running as (
        partition by owner_user_id order by occurred_at
        range between unbounded preceding and current row
    )
),

received_before_posting as (
    select
        l.photo_id,
        r.occurred_at as received_as_of,
        coalesce(r.likes_received_total, 0) as owner_likes_received,
        coalesce(r.followers_total, 0) as owner_followers
    from {{ point_in_time_join(
        'photos', 'owner_timeline', 'owner_user_id', 'posted_at', 'occurred_at'
    ) }}
),

prior_photos as (
    select
        photo_id,
        rank() over (partition by owner_user_id order by posted_at) - 1 as owner_prior_photos
    from owner_photos
),

recent_activity as (
    -- the owner's own activity in the 30 full days before the posting day
    select
        photos.photo_id,
        coalesce(sum(activity.events), 0) as owner_events_30d,
        max(activity.last_event_at) as activity_as_of
    from photos
    left join {{ ref('int_user_activity_daily') }} as activity
        on
            photos.owner_user_id = activity.user_id
            and activity.activity_date < cast(photos.posted_at as date)
            and activity.activity_date
            >= cast({{ dbt.dateadd('day', -30, 'photos.posted_at') }} as date)
    group by photos.photo_id
),

final as (
    select
        photos.photo_id,
        photos.owner_user_id,
        photos.posted_at,
        {{ dbt.datediff('users.signup_at', 'photos.posted_at', 'day') }}
            as owner_account_age_days,
        users.is_verified as owner_is_verified,
        users.country_code as owner_country_code,
        prior_photos.owner_prior_photos,
        received_before_posting.owner_likes_received,
        received_before_posting.owner_followers,
        recent_activity.owner_events_30d,
        greatest(received_before_posting.received_as_of, recent_activity.activity_as_of)
            as features_as_of,
        {{ build_seq() }} as _build_seq
    from photos
    left join users on photos.owner_user_id = users.user_id
    left join prior_photos on photos.photo_id = prior_photos.photo_id
    left join received_before_posting on photos.photo_id = received_before_posting.photo_id
    left join recent_activity on photos.photo_id = recent_activity.photo_id
)

select * from final
