-- The features of the photos posted in the 7 days up to the night's as_of (the ones whose
-- popularity is still open, which the app asks a prediction for), as the training set reads
-- them (macros/features.sql, photo_feature_columns). A photo without its embedding yet is
-- not servable and left out, as the training set leaves it out.
-- `lakehouse materialize` copies it into the online store after the gate passed the night.

with

as_of as (
    select {{ serving_as_of() }} as as_of
),

photos as (
    select photos.*
    from {{ ref('dim_photos') }} as photos
    cross join as_of
    where
        photos.posted_at <= as_of.as_of
        and photos.posted_at > {{ dbt.dateadd('day', -7, 'as_of.as_of') }}
),

embeddings as (
    select
        photo_id,
        embedding
    from {{ ref('stg_ml__photo_embeddings') }}
),

final as (
    select
        photos.photo_id,
        photos.owner_user_id,
        photos.posted_at,
        as_of.as_of,
        {{ photo_feature_columns('photos', 'embeddings') }}
    from photos
    inner join embeddings on photos.photo_id = embeddings.photo_id
    cross join as_of
)

select * from final
