{{
    config(
        incremental_strategy='append',
    )
}}

-- One embedding per photo from the current classifier: the first one ingested.
-- Incremental like stg_app__events.

with

source as (
    select * from {{ source('ml', 'photo_embeddings') }}
),

committed as (
    {{ committed_rows('source', 'photo_embeddings') }}
),

current_model as (
    select *
    from committed
    where model_version = '{{ var("embedding_model_version") }}'
),

deduplicated as (
    {{ first_ingested('current_model', 'photo_id') }}
),

new_embeddings as (
    {{ not_loaded_yet('deduplicated', 'photo_id') }}
),

renamed as (
    select
        ---------- ids
        photo_id,
        model_version,
        ---------- features
        cast(embedding as {{ embedding_type() }}) as embedding,
        ---------- lineage
        _batch_id as batch_id,
        _ingested_at as ingested_at,
        _batch_log_version as batch_log_version,
        {{ build_seq() }} as _build_seq
    from new_embeddings
)

select * from renamed
