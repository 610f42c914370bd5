with

source as (
    select * from {{ source('ml', 'photo_embeddings') }}
),

committed as (
    {{ committed_rows('source') }}
),

current_model as (
    select *
    from committed
    where model_version = '{{ var("embedding_model_version") }}'
),

deduplicated as (
    {{ first_ingested('current_model', 'photo_id') }}
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
