{#- Keyed nights on Spark with Parquet tables (docs/decisions/0015-spark-cluster.md).

    A keyed incremental model (unique_key) replaces the rows of the keys a night brought:
    DuckDB deletes and inserts, Delta would merge. Parquet tables cannot be updated in place,
    and Spark refuses to overwrite a table a query reads from. So a night writes the model's
    next version beside it, `<model>__dbt_next`: the rows of keys the night did not touch,
    then the night's rows (delete+insert's result), and swaps it in by renames. The night's
    SQL (the joins and windows over events) still reads only what is new; the rewrite copies
    the model's own rows, which are per photo or per user-day, not per event.

    A crash before the first rename leaves the model as it was; between the two renames, the
    model is missing and the next build rebuilds it whole (dbt builds a missing incremental
    model from scratch); the leftover `__dbt_next`/`__dbt_old` tables are dropped by the next
    night and never attached (lakehouse.warehouse.spark.attach_spark_tables).

    dbt-spark's incremental materialization calls dbt_spark_get_incremental_sql for the
    statement that writes a night; this project's macro of that name takes precedence, for
    the `insert_overwrite` strategy on a model with a unique_key and no partitions
    (spark__upsert_strategy), and hands every other case to dbt-spark's. -#}

{% macro dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates) %}
    {%- if strategy == 'insert_overwrite' and unique_key and not config.get('partition_by') -%}
        {{ return(spark_keyed_rewrite(source, target, unique_key)) }}
    {%- endif -%}
    {{ return(dbt.dbt_spark_get_incremental_sql(
        strategy, source, target, existing, unique_key, incremental_predicates)) }}
{% endmacro %}


{% macro spark_rewrite_relation(target, suffix) -%}
    {{ return(target.incorporate(path={"identifier": target.identifier ~ suffix})) }}
{%- endmacro %}


{% macro spark_keyed_rewrite(source, target, unique_key) %}
    {%- set keys = [unique_key] if unique_key is string else unique_key -%}
    {%- set next = spark_rewrite_relation(target, '__dbt_next') -%}
    {%- set old = spark_rewrite_relation(target, '__dbt_old') -%}
    {%- set columns = adapter.get_columns_in_relation(target) | map(attribute='quoted') | join(', ') -%}
    {%- set matches = [] -%}
    {%- for key in keys -%}
        {%- do matches.append('night.' ~ key ~ ' = kept.' ~ key) -%}
    {%- endfor -%}
    {%- do run_query('drop table if exists ' ~ next) -%}
    {%- do run_query('drop table if exists ' ~ old) -%}
    {%- do run_query(
        'create table ' ~ next ~ ' using ' ~ config.get('file_format', 'parquet') ~ ' as '
        ~ 'select ' ~ columns ~ ' from ' ~ target ~ ' as kept where not exists (select 1 from '
        ~ source ~ ' as night where ' ~ matches | join(' and ') ~ ') '
        ~ 'union all select ' ~ columns ~ ' from ' ~ source
    ) -%}
    {%- do run_query('alter table ' ~ target ~ ' rename to ' ~ old) -%}
    {#- the statement dbt runs as this model's write: the swap's second rename -#}
    {{ return('alter table ' ~ next ~ ' rename to ' ~ target) }}
{% endmacro %}


{% macro drop_spark_rewrite_leftover() %}
    {#- post-hook: the model's previous version, renamed aside by spark_keyed_rewrite -#}
    {{ return(adapter.dispatch('drop_spark_rewrite_leftover', 'lakehouse')()) }}
{% endmacro %}

{% macro default__drop_spark_rewrite_leftover() %}
    select 1
{% endmacro %}

{% macro spark__drop_spark_rewrite_leftover() %}
    {%- if execute and model.config.materialized == 'incremental' -%}
        drop table if exists {{ spark_rewrite_relation(this, '__dbt_old') }}
    {%- else -%}
        select 1
    {%- endif -%}
{% endmacro %}
