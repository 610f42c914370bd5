{{
    config(
        unique_key='user_id',
        incremental_strategy=upsert_strategy(),
    )
}}

-- One row per user. Incremental: the users new tonight, active tonight, or who posted.

with

{% if is_incremental() %}
touched as (
    select user_id from {{ ref('stg_app__users') }} as users
    where {{ loaded_since_last_run('users') }}
    union
    select user_id from {{ ref('int_user_activity_daily') }} as activity
    where {{ loaded_since_last_run('activity') }}
    union
    select owner_user_id from {{ ref('stg_app__photos') }} as photos
    where {{ loaded_since_last_run('photos') }}
),
{% endif %}

users as (
    select * from {{ ref('stg_app__users') }}
    {% if is_incremental() %}where user_id in (select user_id from touched){% endif %}
),

activity as (
    select
        user_id,
        sum(events) as events_total,
        min(activity_date) as first_active_date,
        max(activity_date) as last_active_date
    from {{ ref('int_user_activity_daily') }}
    where user_id in (select users.user_id from users)
    group by user_id
),

photos as (
    select
        owner_user_id,
        count(*) as photos_posted
    from {{ ref('stg_app__photos') }}
    where owner_user_id in (select users.user_id from users)
    group by owner_user_id
),

final as (
    select
        users.user_id,
        users.country_code,
        users.birth_year,
        users.is_verified,
        users.signup_at,
        coalesce(photos.photos_posted, 0) as photos_posted,
        cast(coalesce(activity.events_total, 0) as bigint) as events_total,
        activity.first_active_date,
        activity.last_active_date,
        {{ build_seq() }} as _build_seq
    from users
    left join activity on users.user_id = activity.user_id
    left join photos on users.user_id = photos.owner_user_id
)

select * from final
