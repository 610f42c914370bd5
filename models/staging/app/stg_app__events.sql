with

source as (
    select * from {{ source('app', 'events') }}
),

committed as (
    -- a file's rows count once its ingest is logged (docs/decisions/0002)
    select source.*
    from source
    where source._batch_id in (
        select log.batch_id from {{ source('ingest', 'ingest_log') }} as log
        where log.status = 'ingested'
    )
),

known_types as (
    select event_type from {{ ref('event_types') }}
),

deduplicated as (
    -- app retries resend an event; the first one ingested wins
    select committed.*
    from committed
    inner join known_types using (event_type)
    qualify row_number() over (
        partition by event_id order by _ingested_at, _source_file, _source_line
    ) = 1
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
        _ingested_at as ingested_at
    from deduplicated
)

select * from renamed
