{#- Nightly increments (docs/decisions/0008-incremental-nights.md).

    Every incremental model stamps the rows it writes with `_loaded_at`, the invocation's
    `run_started_at`. A model's cursor is the newest `_loaded_at` in itself: the rows of its
    inputs loaded after that are what it has not seen yet. The cursor lives in the model's own
    table, so it moves only when the model's own write commits: a build killed half way leaves
    each model at its last commit, and the rerun picks up exactly what each one missed.
    Staging reads bronze the same way, with the Delta version that added each row. -#}

{% macro loaded_at() -%}
    {#- when this invocation loaded a row -#}
    {{ timestamp_literal(run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") ~ "+00") }}
{%- endmacro %}


{% macro _scalar(sql) -%}
    {%- set value = run_query(sql).columns[0].values()[0] -%}
    {{ return(value) }}
{%- endmacro %}


{% macro last_loaded_at() -%}
    {#- This model's cursor as a constant (DuckDB then skips older row groups of the inputs):
        the newest _loaded_at it holds. -#}
    {{ _incremental_timestamp("select cast(max(_loaded_at) as " ~ dbt.type_string() ~ ") from " ~ this, "-infinity") }}
{%- endmacro %}


{% macro loaded_since_last_run(relation) -%}
    {#- Rows of an upstream model that this model has not seen: all of them in a full build. -#}
    {%- if is_incremental() -%}
        {{ relation }}._loaded_at > {{ last_loaded_at() }}
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}


{% macro incremental_lower_bound(sql) -%}
    {#- A constant lower time bound for an incremental run's scan of a large model: the value
        of `sql` (a min over tonight's rows, as text), so DuckDB skips the row groups of older
        days. 'infinity' (scan nothing) when tonight brought nothing. -#}
    {{ _incremental_timestamp(sql, "infinity") }}
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
        keys and inserts; Spark merges, which needs a table format with row-level updates
        (Delta on a cluster with the connector). With Parquet (here), Spark tables cannot be
        updated in place, so dbt_project.yml sets `full_refresh` for the spark target and
        every run rebuilds: the strategy is then never used, but dbt-spark checks it. -#}
    {{ return(adapter.dispatch('upsert_strategy', 'lakehouse')()) }}
{%- endmacro %}

{% macro default__upsert_strategy() -%}delete+insert{%- endmacro %}

{% macro spark__upsert_strategy() -%}
    {{ return('merge' if config.get('file_format') in ['delta', 'iceberg', 'hudi'] else 'append') }}
{%- endmacro %}
