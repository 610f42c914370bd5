{{
    config(
        incremental_strategy='append',
        meta={'key_hash': 'event_id'},
    )
}}

-- One row per event: the first one ingested of each event_id. Incremental: a night reads
-- only the bronze batches added since the last load, and an event_id this table holds
-- already (a retried upload, a re-sent file) is dropped. `_key_hash`: the event id as a
-- number, for the night's unique test (macros/keys.sql).

with

source as (
    select * from {{ source('app', 'events') }}
),

committed as (
    {{ committed_rows('source', 'events') }}
),

known_types as (
    select event_type from {{ ref('event_types') }}
),

of_known_type as (
    select committed.*
    from committed
    inner join known_types on committed.event_type = known_types.event_type
),

deduplicated as (
    {{ first_ingested('of_known_type', 'event_id') }}
),

new_events as (
    {{ not_loaded_yet('deduplicated', 'event_id') }}
),

renamed as (
    select
        ---------- ids
        event_id,
        user_id,
        photo_id,
        session_id,
        ---------- event
        event_type,
        device,
        dwell_ms,
        ---------- free text: only its shape and a salted hash leave staging
        comment_text is not null as has_comment,
        length(comment_text) as comment_length,
        {{ hash_pii('comment_text') }} as comment_text_hash,
        ---------- timestamps
        ts as occurred_at,
        ---------- lineage
        _batch_id as batch_id,
        _ingested_at as ingested_at,
        _batch_log_version as batch_log_version,
        {{ build_seq() }} as _build_seq,
        {{ key_hash() }} as _key_hash
    from new_events
)

select * from renamed
