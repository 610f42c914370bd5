{#- The two steps every staging model takes on a bronze table. -#}

{% macro committed_rows(relation) -%}
    {#- Rows of batches whose ingest is logged as complete (docs/decisions/0002). -#}
    select *
    from {{ relation }}
    where _batch_id in (
        select ingest_log.batch_id
        from {{ source('ingest', 'ingest_log') }} as ingest_log
        where ingest_log.status = 'ingested'
    )
{%- endmacro %}


{% macro first_ingested(relation, key) -%}
    {#- One row per key: the first one ingested (app retries and re-sent files repeat rows). -#}
    select *
    from {{ relation }}
    qualify row_number() over (
        partition by {{ key }} order by _ingested_at, _source_file, _source_line
    ) = 1
{%- endmacro %}
