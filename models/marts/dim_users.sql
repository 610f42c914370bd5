with

users as (
    select * from {{ ref('stg_app__users') }}
),

activity as (
    select
        user_id,
        sum(events) as events_total,
        min(activity_date) as first_active_date,
        max(activity_date) as last_active_date
    from {{ ref('int_user_activity_daily') }}
    group by user_id
),

photos as (
    select owner_user_id, count(*) as photos_posted
    from {{ ref('stg_app__photos') }}
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
        activity.last_active_date
    from users
    left join activity on activity.user_id = users.user_id
    left join photos on photos.owner_user_id = users.user_id
)

select * from final
