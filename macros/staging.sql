{#- The two steps every staging model takes on a bronze table. -#}

{% macro committed_rows(relation, table) -%}
    {#- Rows of batches whose ingest is logged as complete (docs/decisions/0002), with when
        that was (`_batch_committed_at`: the ingest log's finished_at, in the order the log
        commits; a batch whose log commit a rerun finished days later counts from then). In
        an incremental run only the batches committed after the newest one the model holds:
        their ids are looked up first and written into the SQL as constants, so the Delta
        scan skips every other file by its statistics. -#}
    {%- set log = source('ingest', 'ingest_log') -%}
    {%- set committed -%}
        select batch_id, min(finished_at) as committed_at
        from {{ log }}
        where status = 'ingested' and {{ adapter.quote('table') }} = '{{ table }}'
        group by batch_id
        {%- if is_incremental() %}
        having min(finished_at) > (
            select coalesce(max(batch_committed_at), {{ timestamp_literal('-infinity') }}) from {{ this }}
        )
        {%- endif %}
    {%- endset -%}
    {%- if execute and is_incremental() -%}
        {%- set new_batches = run_query(committed).columns[0].values() | list -%}
    {%- endif %}
    select source.*, batches.committed_at as _batch_committed_at
    from {{ relation }} as source
    inner join ({{ committed }}) as batches on batches.batch_id = source._batch_id
    {%- if execute and is_incremental() %}
    where source._batch_id in (
        {%- for batch in new_batches %}{{ dbt.string_literal(dbt.escape_single_quotes(batch)) }}{{ ", " if not loop.last }}{% else %}null{% endfor -%}
    )
    {%- endif %}
{%- endmacro %}


{% macro first_ingested(relation, key) -%}
    {#- One row per key: the first one committed (app retries and re-sent files repeat rows);
        in the order incremental runs see batches, so both keep the same row. -#}
    select *
    from {{ relation }}
    qualify row_number() over (
        partition by {{ key }} order by _batch_committed_at, _source_file, _source_line
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
