with

source as (
    select * from {{ source('app', 'photos') }}
),

committed as (
    select source.*
    from source
    where source._batch_id in (
        select log.batch_id from {{ source('ingest', 'ingest_log') }} as log
        where log.status = 'ingested'
    )
),

deduplicated as (
    select *
    from committed
    qualify row_number() over (
        partition by photo_id order by _ingested_at, _source_file, _source_line
    ) = 1
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
