{{
    config(
        unique_key='photo_id',
        incremental_strategy=upsert_strategy(),
    )
}}

-- The nightly training set: one row per photo whose 7-day label is mature, with the owner's
-- point-in-time features, caption and image features, the weak label, the label, and a
-- deterministic split (md5 of photo_id: 80% train, 10% val, 10% test).
-- Incremental: the photos whose label matured tonight, or whose label, features, embedding
-- or metadata changed (a late event, an edited caption).

with

{% if is_incremental() %}
touched as (
    select photo_id from {{ ref('dim_photos') }} as photos
    where {{ loaded_since_last_run('photos') }}
    union
    select photo_id from {{ ref('int_photo_engagement_windows') }} as labels
    where {{ loaded_since_last_run('labels') }}
    union
    select photo_id from {{ ref('int_owner_features_as_of_posting') }} as owner_features
    where {{ loaded_since_last_run('owner_features') }}
    union
    select photo_id from {{ ref('stg_ml__photo_embeddings') }} as embeddings
    where {{ loaded_since_last_run('embeddings') }}
),
{% endif %}

photos as (
    select * from {{ ref('dim_photos') }}
),

labels as (
    select * from {{ ref('int_photo_engagement_windows') }}
    where is_label_mature
    {% if is_incremental() %}and photo_id in (select photo_id from touched){% endif %}
),

owner_features as (
    select * from {{ ref('int_owner_features_as_of_posting') }}
),

embeddings as (
    select
        photo_id,
        embedding
    from {{ ref('stg_ml__photo_embeddings') }}
),

split_buckets as (
    select
        photo_id,
        {{ deterministic_bucket('photo_id') }} as bucket
    from labels
),

final as (
    select
        ---------- ids and split
        photos.photo_id,
        case
            when split_buckets.bucket < 80 then 'train'
            when split_buckets.bucket < 90 then 'val'
            else 'test'
        end as split,
        photos.posted_at,
        ---------- owner features, as of posting (as serving reads them: macros/features.sql)
        {{ owner_feature_columns('owner_features') }},
        ---------- photo features
        {{ photo_feature_columns('photos', 'embeddings') }},
        ---------- weak supervision
        photos.weak_label,
        ---------- labels
        cast(labels.likes_24h as integer) as likes_24h,
        cast(labels.likes_7d as integer) as likes_7d,
        cast(labels.engagement_score_7d as integer) as engagement_score_7d,
        labels.is_popular,
        ---------- bookkeeping
        {{ build_seq() }} as _build_seq
    from labels
    inner join photos on labels.photo_id = photos.photo_id
    inner join split_buckets on labels.photo_id = split_buckets.photo_id
    inner join embeddings on labels.photo_id = embeddings.photo_id
    left join owner_features on labels.photo_id = owner_features.photo_id
)

select * from final
