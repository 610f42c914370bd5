{#- Writing a table on Spark with Parquet (docs/decisions/0015-spark-cluster.md): every table
    a build writes is written aside, then swapped in by renames.

    Keyed nights. A keyed incremental model (unique_key) replaces the rows of the keys a night
    brought: DuckDB deletes and inserts, Delta would merge. Parquet tables cannot be updated
    in place, and Spark refuses to overwrite a table a query reads from. So a night writes the
    model's next version beside it: the rows of keys the night did not touch, then the night's
    rows (delete+insert's result). The night's SQL (the joins and windows over events) still
    reads only what is new; the rewrite copies the model's own rows, which are per photo or
    per user-day, not per event. dbt-spark's incremental materialization calls
    dbt_spark_get_incremental_sql for the statement that writes a night; this project's macro
    of that name takes precedence, for the `insert_overwrite` strategy on a model with a
    unique_key and no partitions (spark__upsert_strategy), and hands every other case to
    dbt-spark's.

    Whole tables (a table model each night, an incremental model's first build or full
    refresh) go through spark__create_table_as, which writes them aside the same way.

    Crashes. Spark writes a table's files before the metastore lists it, so a build killed
    while it writes leaves a folder with no table, and Spark refuses to create a table over
    an existing folder (LOCATION_ALREADY_EXISTS). So the versions written aside or swapped
    out carry this invocation's id, `<model>__dbt_next_<id>` and `<model>__dbt_old_<id>`: a
    folder a killed build left never stands in the way of the next build, whoever runs it
    (`lakehouse build`, or an analyst's plain `dbt build`). A crash before the swap leaves the
    model as it was; between its two renames, the model is missing and the next build builds
    it whole. The next build's first hook drops the leftover tables the metastore lists
    (drop_spark_rewrite_leftovers), `lakehouse build` removes leftover folders after a build
    that succeeded (lakehouse.warehouse.spark.clear_rewrite_leftovers), and
    attach_spark_tables never serves either. -#}

{% macro dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates) %}
    {%- if strategy == 'insert_overwrite' and unique_key and not config.get('partition_by') -%}
        {{ return(spark_keyed_rewrite(source, target, unique_key)) }}
    {%- endif -%}
    {{ return(dbt.dbt_spark_get_incremental_sql(
        strategy, source, target, existing, unique_key, incremental_predicates)) }}
{% endmacro %}


{% macro spark__create_table_as(temporary, relation, compiled_code, language='sql') -%}
    {#- dbt-spark's statement, run for a version written aside; what dbt then runs as the
        model's write is the swap. Temporary views, Python models, table formats that replace
        a table in place (Delta, Iceberg) and tables at a location of their own are dbt-spark's. -#}
    {%- if temporary or language != 'sql' or config.get('location_root')
        or spark_updates_in_place() -%}
        {{ return(dbt.spark__create_table_as(temporary, relation, compiled_code, language)) }}
    {%- endif -%}
    {%- set next = spark_rewrite_relation(relation, '__dbt_next') -%}
    {%- do run_query(dbt.spark__create_table_as(False, next, compiled_code, language)) -%}
    {{ return(spark_swap_in(next, relation)) }}
{%- endmacro %}


{% macro spark_updates_in_place() -%}
    {#- Whether this model's table format updates rows and replaces tables in place (Delta,
        Iceberg, Hudi): such tables merge a keyed night (spark__upsert_strategy) and are
        replaced by dbt-spark; Parquet ones are written aside and swapped in -#}
    {{ return(config.get('file_format') in ['delta', 'iceberg', 'hudi']) }}
{%- endmacro %}


{% macro spark_rewrite_relation(target, kind) -%}
    {#- `target`'s version written aside (kind __dbt_next) or swapped out (__dbt_old) by this
        invocation: its id makes the name one no earlier build used -#}
    {{ return(target.incorporate(path={"identifier":
        target.identifier ~ kind ~ '_' ~ invocation_id.replace('-', '')[:12]})) }}
{%- endmacro %}


{% macro spark_swap_in(next, target) -%}
    {#- Renames `target` (where it exists) aside and returns the statement that renames
        `next` to it: dbt runs it as the model's write -#}
    {%- if adapter.get_relation(database=target.database, schema=target.schema, identifier=target.identifier) -%}
        {%- do run_query('alter table ' ~ target ~ ' rename to ' ~ spark_rewrite_relation(target, '__dbt_old')) -%}
    {%- endif -%}
    {{ return('alter table ' ~ next ~ ' rename to ' ~ target) }}
{%- endmacro %}


{% macro spark_keyed_rewrite(source, target, unique_key) %}
    {%- set keys = [unique_key] if unique_key is string else unique_key -%}
    {%- set next = spark_rewrite_relation(target, '__dbt_next') -%}
    {%- set columns = adapter.get_columns_in_relation(target) | map(attribute='quoted') | join(', ') -%}
    {%- set matches = [] -%}
    {%- for key in keys -%}
        {%- do matches.append('night.' ~ key ~ ' = kept.' ~ key) -%}
    {%- endfor -%}
    {%- do run_query(
        'create table ' ~ next ~ ' using ' ~ config.get('file_format', 'parquet') ~ ' as '
        ~ 'select ' ~ columns ~ ' from ' ~ target ~ ' as kept where not exists (select 1 from '
        ~ source ~ ' as night where ' ~ matches | join(' and ') ~ ') '
        ~ 'union all select ' ~ columns ~ ' from ' ~ source
    ) -%}
    {{ return(spark_swap_in(next, target)) }}
{% endmacro %}


{% macro drop_spark_rewrite_leftover() %}
    {#- post-hook: the model's previous version, renamed aside by spark_swap_in -#}
    {{ return(adapter.dispatch('drop_spark_rewrite_leftover', 'lakehouse')()) }}
{% endmacro %}

{% macro default__drop_spark_rewrite_leftover() %}
    select 1
{% endmacro %}

{% macro spark__drop_spark_rewrite_leftover() %}
    {%- if execute and model.config.materialized in ['incremental', 'table'] -%}
        drop table if exists {{ spark_rewrite_relation(this, '__dbt_old') }}
    {%- else -%}
        select 1
    {%- endif -%}
{% endmacro %}


{% macro drop_spark_rewrite_leftovers() %}
    {#- on-run-start: the versions written aside or swapped out that a killed build left in
        the metastore (spark_rewrite_relation), dropped before this build writes -#}
    {{ return(adapter.dispatch('drop_spark_rewrite_leftovers', 'lakehouse')()) }}
{% endmacro %}

{% macro default__drop_spark_rewrite_leftovers() %}
    select 1
{% endmacro %}

{% macro spark__drop_spark_rewrite_leftovers() %}
    {%- if execute and flags.WHICH in ['build', 'run', 'retry']
        and run_query("show schemas like '" ~ target.schema ~ "'").rows | length > 0 -%}
        {%- for row in run_query("show tables in " ~ target.schema ~ " like '*__dbt_next_*|*__dbt_old_*'").rows -%}
            {%- if not row[2] -%}  {#- (namespace, tableName, isTemporary) -#}
                {%- do run_query("drop table if exists " ~ target.schema ~ "." ~ row[1]) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    select 1
{% endmacro %}
