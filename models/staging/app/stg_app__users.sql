{{
    config(
        incremental_strategy='append',
    )
}}

-- One row per user: the first one ingested. Incremental like stg_app__events.

with

source as (
    select * from {{ source('app', 'users') }}
),

committed as (
    {{ committed_rows('source', 'users') }}
),

deduplicated as (
    {{ first_ingested('committed', 'user_id') }}
),

new_users as (
    {{ not_loaded_yet('deduplicated', 'user_id') }}
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
        _ingested_at as ingested_at,
        _batch_log_version as batch_log_version,
        {{ build_seq() }} as _build_seq
    from new_users
)

select * from renamed
