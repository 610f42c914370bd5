with

source as (
    select * from {{ source('app', 'photos') }}
),

committed as (
    {{ committed_rows('source') }}
),

deduplicated as (
    {{ first_ingested('committed', 'photo_id') }}
),

renamed as (
    select
        ---------- ids
        photo_id,
        owner_id as owner_user_id,
        ---------- timestamps
        posted_at,
        ---------- content
        caption,
        lang as caption_lang,
        camera,
        width,
        height,
        ---------- lineage
        _batch_id as batch_id,
        _ingested_at as ingested_at
    from deduplicated
)

select * from renamed
