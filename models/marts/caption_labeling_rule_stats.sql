{{ config(materialized='table') }}  -- a summary rebuilt whole each run

-- How each caption labeling rule behaves: how often it fires (coverage), how often another
-- rule fires on the same photo (overlap) or votes the other way (conflict), and how often it
-- agrees with the real 7-day label where that label is mature.

with

votes as (
    select
        photo_id,
        rule_name,
        label
    from {{ ref('int_caption_rule_votes') }}
    where fired
),

rules as (
    select
        rule_name,
        label
    from {{ ref('caption_labeling_rules') }}
),

photo_count as (
    select count(*) as photos from {{ ref('stg_app__photos') }}
),

labels as (
    select
        photo_id,
        is_popular
    from {{ ref('int_photo_engagement_windows') }}
    where is_label_mature
),

per_vote as (
    select
        votes.rule_name,
        votes.photo_id,
        votes.label,
        labels.is_popular,
        exists(
            select 1 from votes as other
            where other.photo_id = votes.photo_id and other.rule_name <> votes.rule_name
        ) as overlaps_another_rule,
        exists(
            select 1 from votes as other
            where other.photo_id = votes.photo_id and other.label <> votes.label
        ) as conflicts
    from votes
    left join labels on votes.photo_id = labels.photo_id
),

final as (
    select
        rules.rule_name,
        rules.label,
        count(per_vote.photo_id) as photos_labeled,
        cast(count(per_vote.photo_id) as double) / max(photo_count.photos) as coverage,
        coalesce(avg(case when per_vote.overlaps_another_rule then 1 else 0 end), 0)
            as overlap_rate,
        coalesce(avg(case when per_vote.conflicts then 1 else 0 end), 0) as conflict_rate,
        avg(
            case
                when per_vote.is_popular is null then null
                when (per_vote.label = 'popular') = per_vote.is_popular then 1
                else 0
            end
        ) as agreement_with_label
    from rules
    cross join photo_count
    left join per_vote on rules.rule_name = per_vote.rule_name
    group by rules.rule_name, rules.label
)

select * from final
