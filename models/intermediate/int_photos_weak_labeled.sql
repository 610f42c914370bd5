-- Majority vote of the caption rules per photo; a tie or no vote abstains (null label).

with

photos as (
    select photo_id from {{ ref('stg_app__photos') }}
),

votes as (
    select * from {{ ref('int_caption_rule_votes') }}
),

tallied as (
    select
        photo_id,
        count(case when label = 'popular' then 1 end) as votes_popular,
        count(case when label = 'not_popular' then 1 end) as votes_not_popular
    from votes
    group by photo_id
),

final as (
    select
        photos.photo_id,
        coalesce(tallied.votes_popular, 0) as votes_popular,
        coalesce(tallied.votes_not_popular, 0) as votes_not_popular,
        case
            when coalesce(tallied.votes_popular, 0) > coalesce(tallied.votes_not_popular, 0)
                then 'popular'
            when coalesce(tallied.votes_not_popular, 0) > coalesce(tallied.votes_popular, 0)
                then 'not_popular'
        end as weak_label
    from photos
    left join tallied on tallied.photo_id = photos.photo_id
)

select * from final
