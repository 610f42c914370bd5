{{
    config(
        unique_key='photo_id',
        incremental_strategy=upsert_strategy(),
    )
}}

-- Majority vote of the caption rules per photo; a tie or no vote abstains (null label).
-- Incremental: the photos whose votes were cast again tonight.

with

photos as (
    select distinct photo_id from {{ ref('int_caption_rule_votes') }} as votes
    where {{ loaded_since_last_run('votes') }}
),

votes as (
    select
        photo_id,
        label
    from {{ ref('int_caption_rule_votes') }}
    where fired and photo_id in (select photos.photo_id from photos)
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
        end as weak_label,
        {{ build_seq() }} as _build_seq
    from photos
    left join tallied on photos.photo_id = tallied.photo_id
)

select * from final
