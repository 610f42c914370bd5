{#- Nightly increments (docs/decisions/0008-incremental-nights.md).

    Every incremental model stamps the rows it writes with `_build_seq`, the number this
    project gave the dbt invocation when it started (record_run_start: one more than any
    before it in this warehouse, so monotonic by construction, whatever the machine's clock
    says). A model's cursor is the highest `_build_seq` in itself: the rows of its inputs
    written by a later invocation are what it has not seen yet. The cursor lives in the
    model's own table, so it moves only when the model's own write commits: a build killed
    half way leaves each model at its last commit, and the rerun picks up exactly what each
    one missed. Staging follows the ingest log's own Delta versions the same way
    (macros/staging.sql). Clocks decide nothing here. -#}

{% macro build_seq() -%}
    {#- This invocation's number (lakehouse_dbt_runs.build_seq), as a constant -#}
    {#- the on-run-start hook made the table for these commands (dbt's relation cache does not
        know it yet); for the others it may not exist -#}
    {%- set runs = (lineage_table('lakehouse_dbt_runs')
        if flags.WHICH in ['build', 'run', 'retry']
        else adapter.get_relation(target.database, target.schema, 'lakehouse_dbt_runs'))
        if execute else none -%}
    {%- set found = run_query(
        "select max(build_seq) from " ~ runs ~ " where invocation_id = '" ~ invocation_id ~ "'"
    ).columns[0].values() if runs is not none else [] -%}
    {%- set seq = found[0] if found | length > 0 else none -%}
    {%- if seq is not none -%}
        cast({{ seq | int }} as bigint)
    {%- elif execute and flags.WHICH in ['build', 'run', 'retry'] -%}
        {{ exceptions.raise_compiler_error(
            "this dbt invocation has no build number: its on-run-start hook "
            ~ "record_run_start did not run (dbt_project.yml)"
        ) }}
    {%- else -%}
        {#- parsing, or compiling only (compile, docs generate, show): no hook ran -#}
        cast(null as bigint)
    {%- endif -%}
{%- endmacro %}


{% macro _scalar(sql) -%}
    {%- set value = run_query(sql).columns[0].values()[0] -%}
    {{ return(value) }}
{%- endmacro %}


{% macro last_build_seq() -%}
    {#- This model's cursor as a constant: the highest _build_seq it holds (-1: none) -#}
    {%- if execute and is_incremental() -%}
        {%- set value = _scalar("select coalesce(max(_build_seq), -1) from " ~ this) -%}
        cast({{ value | int }} as bigint)
    {%- else -%}
        cast(-1 as bigint)
    {%- endif -%}
{%- endmacro %}


{% macro loaded_since_last_run(relation) -%}
    {#- Rows of an upstream model that this model has not seen: all of them in a full build. -#}
    {%- if is_incremental() -%}
        {{ relation }}._build_seq > {{ last_build_seq() }}
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}


{% macro rebuilt_since_last_run(relation) -%}
    {#- Whether every row of an upstream model is newer than this model's cursor: it was
        rebuilt whole since this model last ran (a `--full-refresh` of it alone), so "loaded
        since the last run" is every row. A model that adds tonight's rows to what it holds
        must then count everything again. False in a full build. -#}
    {%- if execute and is_incremental() -%}
        {%- set rebuilt = _scalar(
            "select coalesce(min(_build_seq) > " ~ last_build_seq() ~ ", false) from " ~ relation
        ) -%}
        {{ return(rebuilt == true) }}
    {%- else -%}
        {{ return(false) }}
    {%- endif -%}
{%- endmacro %}


{% macro incremental_lower_bound(sql) -%}
    {#- A constant lower time bound for an incremental run's scan of a large model: the value
        of `sql` (a min over tonight's rows, as text), so DuckDB skips the row groups of older
        days. 'infinity' (scan nothing) when tonight brought nothing. -#}
    {{ _incremental_timestamp(sql, "infinity") }}
{%- endmacro %}


{% macro incremental_newest_from(sql) -%}
    {#- A constant lower time bound for finding the newest time in a large model: the value
        of `sql` (the newest of tonight's rows, as text), which the newest of all is no older
        than. '-infinity' (read everything) when tonight brought nothing. -#}
    {{ _incremental_timestamp(sql, "-infinity") }}
{%- endmacro %}


{% macro _incremental_timestamp(sql, when_null) -%}
    {#- The timestamp `sql` returns (as text), run now and written as a SQL constant;
        `when_null` when it returns null; '-infinity' (everything) in a full build. -#}
    {%- if execute and is_incremental() -%}
        {%- set value = _scalar(sql) -%}
        {{ timestamp_literal(when_null if value is none else value) }}
    {%- else -%}
        {{ timestamp_literal('-infinity') }}
    {%- endif -%}
{%- endmacro %}


{% macro upsert_strategy() -%}
    {#- How a keyed incremental model (unique_key) writes a night's rows: DuckDB deletes the
        keys and inserts; Spark merges where the table format has row-level updates (Delta on
        a cluster with the connector), and with Parquet (here) writes the table's next
        version beside it and swaps it in (macros/spark/incremental.sql, through dbt-spark's
        insert_overwrite strategy). -#}
    {{ return(adapter.dispatch('upsert_strategy', 'lakehouse')()) }}
{%- endmacro %}

{% macro default__upsert_strategy() -%}delete+insert{%- endmacro %}

{% macro spark__upsert_strategy() -%}
    {{ return('merge' if spark_updates_in_place() else 'insert_overwrite') }}
{%- endmacro %}
