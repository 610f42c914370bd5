{{
    config(
        unique_key='photo_id',
        incremental_strategy=upsert_strategy(),
    )
}}

-- One row per photo. Who posted it and when are facts: the first ingested record's. What the
-- owner can edit (caption, language, camera, size) comes from the latest edit, by updated_at
-- (a new photo's record counts as edited at posted_at); between records of the same edit
-- the first ingested wins, so a re-sent old file never undoes a correction.
-- Incremental: a night reads the bronze batches added since the last load and rewrites the
-- photos they mention, choosing between the row held and the new records by the same rule.

with

source as (
    select * from {{ source('app', 'photos') }}
),

committed as (
    {{ committed_rows('source', 'photos') }}
),

candidates as (
    select
        photo_id,
        owner_id,
        posted_at,
        caption,
        lang,
        camera,
        width,
        height,
        updated_at,
        _batch_id,
        _ingested_at,
        _source_file,
        _source_line,
        _batch_log_version
    from committed
    {% if is_incremental() %}
    union all
    -- the row held for a photo the night mentions: ingested before anything new
    select
        held.photo_id, held.owner_user_id, held.posted_at, held.caption, held.caption_lang,
        held.camera, held.width, held.height, held.updated_at,
        held.batch_id, held.ingested_at, '', 0, held.batch_log_version
    from {{ this }} as held
    where held.photo_id in (select photo_id from committed)
    {% endif %}
),

identity as (
    {{ first_ingested('candidates', 'photo_id') }}
),

latest_edit as (
    select *
    from candidates
    qualify row_number() over (
        partition by photo_id
        order by
            coalesce(updated_at, posted_at) desc,
            _batch_log_version nulls first,
            _source_file asc,
            _source_line asc
    ) = 1
),

renamed as (
    select
        ---------- ids
        identity.photo_id,
        identity.owner_id as owner_user_id,
        ---------- timestamps
        identity.posted_at,
        latest_edit.updated_at,
        ---------- content
        latest_edit.caption,
        latest_edit.lang as caption_lang,
        latest_edit.camera,
        latest_edit.width,
        latest_edit.height,
        ---------- lineage: the record the content came from
        latest_edit._batch_id as batch_id,
        latest_edit._ingested_at as ingested_at,
        latest_edit._batch_log_version as batch_log_version,
        {{ build_seq() }} as _build_seq
    from identity
    inner join latest_edit on identity.photo_id = latest_edit.photo_id
)

select * from renamed
