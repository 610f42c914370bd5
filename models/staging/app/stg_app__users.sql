with

source as (
    select * from {{ source('app', 'users') }}
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
        partition by user_id order by _ingested_at, _source_file, _source_line
    ) = 1
),

renamed as (
    select
        ---------- ids
        user_id,
        ---------- PII, hashed with a salt from the environment: never stored raw past here
        {{ hash_pii('email') }} as email_hash,
        {{ hash_pii('display_name') }} as display_name_hash,
        ---------- attributes
        country as country_code,
        birth_year,
        coalesce(is_verified, false) as is_verified,
        ---------- timestamps
        signup_at,
        ---------- lineage
        _batch_id as batch_id,
        _ingested_at as ingested_at
    from deduplicated
)

select * from renamed
