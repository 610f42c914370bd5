with

source as (
    select * from {{ source('ml', 'photo_embeddings') }}
),

committed as (
    select source.*
    from source
    where source._batch_id in (
        select log.batch_id from {{ source('ingest', 'ingest_log') }} as log
        where log.status = 'ingested'
    )
),

current_model as (
    select *
    from committed
    where model_version = '{{ var("embedding_model_version") }}'
),

deduplicated as (
    select *
    from current_model
    qualify row_number() over (
        partition by photo_id order by _ingested_at, _source_file, _source_line
    ) = 1
),

renamed as (
    select
        ---------- ids
        photo_id,
        model_version,
        ---------- features
        cast(embedding as float[{{ embedding_dim() }}]) as embedding,
        ---------- lineage
        _batch_id as batch_id,
        _ingested_at as ingested_at
    from deduplicated
)

select * from renamed
