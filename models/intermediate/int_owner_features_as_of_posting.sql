{{
    config(
        unique_key='photo_id',
        incremental_strategy=upsert_strategy(),
    )
}}

-- The photo owner's features as they were just before the photo was posted.
-- Point in time: only data strictly before posted_at is used, so training sees what serving
-- would have seen. The features' one definition is macros/features.sql
-- (owner_features_before), which serving evaluates at the night's as_of
-- (online_owner_features). features_as_of is the newest event time the features used.
-- Incremental: what arrived tonight can only change the features of photos posted after it
-- (a late like, a late photo, the owner's own late activity) or of an owner who just
-- arrived; those photos are computed again from their owners' whole history. A day of
-- engagement that changed (int_owner_engagement_daily) changes the photos posted from the
-- start of that day on.

with

{% if is_incremental() %}
{%- set changes_sql -%}
    -- (owner, since): the owner's photos posted at or after `since` may change
    select owner_user_id, posted_at as since
    from {{ ref('stg_app__photos') }} as photos
    where {{ loaded_since_last_run('photos') }}
    union all
    select owner_user_id, cast(engagement_date as {{ timestamp_tz() }})
    from {{ ref('int_owner_engagement_daily') }} as engagement
    where {{ loaded_since_last_run('engagement') }}
    union all
    select activity.user_id, cast(activity.activity_date as {{ timestamp_tz() }})
    from {{ ref('int_user_activity_daily') }} as activity
    where {{ loaded_since_last_run('activity') }}
    union all
    select users.user_id, {{ timestamp_literal('-infinity') }}
    from {{ ref('stg_app__users') }} as users
    where {{ loaded_since_last_run('users') }}
{%- endset %}
{%- set photos_sql -%}
    -- the photos whose features are computed tonight
    select all_photos.photo_id, all_photos.owner_user_id, all_photos.posted_at
    from {{ ref('stg_app__photos') }} as all_photos
    inner join (
        select owner_user_id, min(since) as since
        from ({{ changes_sql }}) as changes
        group by owner_user_id
    ) as owners
        on owners.owner_user_id = all_photos.owner_user_id
        and all_photos.posted_at >= owners.since
{%- endset %}
photos as (
    {{ photos_sql }}
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

spine as (
    select
        photo_id as spine_key,
        owner_user_id,
        posted_at as spine_at
    from photos
),

{#- the events of a posting's own day: none before the day of the earliest photo computed -#}
{{ owner_features_before('spine', 'owner_photos', incremental_lower_bound(
    "select cast(min(cast(posted_at as date)) as " ~ dbt.type_string() ~ ") || ' 00:00:00+00' from ("
    ~ photos_sql ~ ") as photos"
) if is_incremental() else timestamp_literal('-infinity')) }},

final as (
    select
        spine_key as photo_id,
        owner_user_id,
        spine_at as posted_at,
        owner_account_age_days,
        owner_is_verified,
        owner_country_code,
        owner_prior_photos,
        owner_likes_received,
        owner_followers,
        owner_events_30d,
        features_as_of,
        {{ build_seq() }} as _build_seq
    from owner_features
)

select * from final
