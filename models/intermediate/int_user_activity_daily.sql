-- What each user did, per UTC day, as the actor of events.

with

events as (
    select user_id, event_type, occurred_at from {{ ref('stg_app__events') }}
),

daily as (
    select
        user_id,
        cast(occurred_at as date) as activity_date,
        count(*) as events,
        count(case when event_type = 'view' then 1 end) as views,
        count(case when event_type = 'like' then 1 end) as likes_given,
        count(case when event_type = 'comment' then 1 end) as comments_given,
        count(case when event_type = 'follow' then 1 end) as follows_given,
        max(occurred_at) as last_event_at
    from events
    group by user_id, cast(occurred_at as date)
)

select * from daily
