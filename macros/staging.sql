{#- The two steps every staging model takes on a bronze table. -#}

{% macro committed_rows(relation, table) -%}
    {#- Rows of batches whose ingest is logged as complete (docs/decisions/0002), with the
        ingest log's Delta version that logged them (`_batch_log_version`: the log's own
        identity, monotonic by construction; a batch whose log commit a rerun finished days
        later has a later version, so it is new to staging). In an incremental run only the
        batches logged after the newest one the model holds: their ids are looked up first
        and written into the SQL as constants, so the Delta scan skips every other file by its
        statistics. Logs written before log_version existed have it null: only a full build
        reads those batches. -#}
    {%- set log = source('ingest', 'ingest_log') -%}
    {%- set committed -%}
        select batch_id, min(log_version) as log_version
        from {{ log }}
        where status = 'ingested' and {{ adapter.quote('table') }} = '{{ table }}'
        group by batch_id
        {%- if is_incremental() %}
        having min(log_version) > (
            select coalesce(max(batch_log_version), -1) from {{ this }}
        )
        {%- endif %}
    {%- endset -%}
    {%- if execute and is_incremental() -%}
        {%- set new_batches = run_query(committed).columns[0].values() | list -%}
    {%- endif %}
    select source.*, batches.log_version as _batch_log_version
    from {{ relation }} as source
    inner join ({{ committed }}) as batches on batches.batch_id = source._batch_id
    {%- if execute and is_incremental() %}
    where source._batch_id in (
        {%- for batch in new_batches %}{{ dbt.string_literal(dbt.escape_single_quotes(batch)) }}{{ ", " if not loop.last }}{% else %}null{% endfor -%}
    )
    {%- endif %}
{%- endmacro %}


{% macro first_ingested(relation, key) -%}
    {#- One row per key: the first one logged (app retries and re-sent files repeat rows);
        in the order incremental runs see batches, so both keep the same row. -#}
    select *
    from {{ relation }}
    qualify row_number() over (
        partition by {{ key }} order by _batch_log_version nulls first, _source_file, _source_line
    ) = 1
{%- endmacro %}


{% macro not_loaded_yet(relation, key) -%}
    {#- Rows whose key this incremental model does not hold yet: the first committed row of a
        key is in already, so a row re-sent on a later night is dropped (in a full build,
        first_ingested keeps the same one). -#}
    select *
    from {{ relation }}
    {%- if is_incremental() %}
    where {{ key }} not in (
        select existing.{{ key }} from {{ this }} as existing
        where existing.{{ key }} in (select {{ key }} from {{ relation }})
    )
    {%- endif %}
{%- endmacro %}
