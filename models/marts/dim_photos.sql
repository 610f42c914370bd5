{{
    config(
        unique_key='photo_id',
        incremental_strategy=upsert_strategy(),
    )
}}

-- One row per photo. Incremental: the photos new or edited tonight, or whose embedding or
-- weak label arrived or changed.

with

{% if is_incremental() %}
touched as (
    select photo_id from {{ ref('stg_app__photos') }} as photos
    where {{ loaded_since_last_run('photos') }}
    union
    select photo_id from {{ ref('stg_ml__photo_embeddings') }} as embeddings
    where {{ loaded_since_last_run('embeddings') }}
    union
    select photo_id from {{ ref('int_photos_weak_labeled') }} as weak_labels
    where {{ loaded_since_last_run('weak_labels') }}
),
{% endif %}

photos as (
    select * from {{ ref('stg_app__photos') }}
    {% if is_incremental() %}where photo_id in (select photo_id from touched){% endif %}
),

embeddings as (
    select
        photo_id,
        model_version
    from {{ ref('stg_ml__photo_embeddings') }}
),

weak_labels as (
    select * from {{ ref('int_photos_weak_labeled') }}
),

final as (
    select
        photos.photo_id,
        photos.owner_user_id,
        photos.posted_at,
        photos.caption_lang,
        cast(coalesce(length(photos.caption), 0) as bigint) as caption_length,
        cast(
            coalesce(length(photos.caption) - length(replace(photos.caption, '#', '')), 0) as bigint
        )
            as hashtag_count,
        photos.width,
        photos.height,
        cast(photos.width as double) / nullif(photos.height, 0) as aspect_ratio,
        photos.camera,
        embeddings.model_version as embedding_model_version,
        weak_labels.weak_label,
        weak_labels.votes_popular,
        weak_labels.votes_not_popular,
        {{ build_seq() }} as _build_seq
    from photos
    left join embeddings on photos.photo_id = embeddings.photo_id
    left join weak_labels on photos.photo_id = weak_labels.photo_id
)

select * from final
