-- Every caption labeling rule (seeds/caption_labeling_rules.csv) applied to every caption:
-- one row per (photo, rule that fired), with the label the rule votes for.

with

photos as (
    select photo_id, caption from {{ ref('stg_app__photos') }}
    where caption is not null
),

rules as (
    select rule_name, pattern, label from {{ ref('caption_labeling_rules') }}
),

votes as (
    select
        photos.photo_id,
        rules.rule_name,
        rules.label
    from photos
    cross join rules
    where {{ regex_matches('photos.caption', 'rules.pattern') }}
)

select * from votes
