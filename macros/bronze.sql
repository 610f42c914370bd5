{#- Reading the bronze Delta tables: where they are, which version, and a clear error
    when they are not there. -#}

{% macro lake_root() -%}
    {#- --vars '{lake_root: ...}', else $LAKEHOUSE_LAKE, else the demo's lake; the same rule
        as the source template in dbt_project.yml -#}
    {{ var('lake_root', env_var('LAKEHOUSE_LAKE', 'data/demo/lake')).rstrip('/') }}
{%- endmacro %}


{% macro bronze_path(table) -%}
    {{ lake_root() }}/bronze/{{ table }}
{%- endmacro %}


{% macro bronze_ingested(table) -%}
    {#- Whether the lake holds the bronze Delta table `table` (a commit in its log). -#}
    {%- set commits = run_query(
        "select count(*) from glob('" ~ bronze_path(table) ~ "/_delta_log/*.json')"
    ).columns[0].values()[0] -%}
    {{ return(commits > 0) }}
{%- endmacro %}


{% macro bronze_tables() -%}
    {#- The bronze tables this project reads: the identifiers of its sources (every source is
        a bronze table; dbt_project.yml gives them one location template). -#}
    {%- set tables = [] -%}
    {%- for source in graph.sources.values() | sort(attribute='identifier') -%}
        {%- do tables.append(source.identifier) -%}
    {%- endfor -%}
    {{ return(tables) }}
{%- endmacro %}


{% macro assert_bronze_exists() %}
    {{ return(adapter.dispatch('assert_bronze_exists', 'lakehouse')()) }}
{% endmacro %}


{% macro bronze_pin_sql(table) -%}
    {#- SQL for the Delta version of `table` this invocation reads. On DuckDB, the session's
        pin (the variable the profile's plugin sets: lakehouse.warehouse.dbt_plugin); on
        Spark, the `bronze_versions` var the files were listed for. -#}
    {{ return(adapter.dispatch('bronze_pin_sql', 'lakehouse')(table)) }}
{%- endmacro %}

{% macro duckdb__bronze_pin_sql(table) -%}
    getvariable('lakehouse_bronze_versions')['{{ table }}']
{%- endmacro %}

{% macro default__bronze_pin_sql(table) -%}
    {%- set pinned = var('bronze_versions', {}).get(table) -%}
    {{ pinned if pinned is not none else 'null' }}
{%- endmacro %}

{% macro duckdb__assert_bronze_exists() %}
    {%- if execute -%}
        {%- for table in bronze_tables() -%}
            {%- if not bronze_ingested(table) -%}
                {{ exceptions.raise_compiler_error(
                    "No bronze Delta table at " ~ bronze_path(table) ~ ". Ingest first: "
                    ~ "`lakehouse ingest <landing> --lake " ~ lake_root() ~ "` (or `make demo`"
                    ~ " for sample data), or point dbt at your lake with LAKEHOUSE_LAKE."
                ) }}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    select 1
{% endmacro %}

{% macro spark__assert_bronze_exists() %}
    {#- Spark has no Delta reader here (its connector's jars come from Maven): each bronze
        source becomes a view over exactly the Parquet files of its pinned Delta version,
        which deltalake lists (`bronze_files`, a glob per table, passed by `lakehouse build
        --engine spark` or `lakehouse dbt-vars --engine spark`). Commands that build nothing
        from bronze (test, source freshness, docs) keep the views of the last build.
        docs/decisions/0011-spark.md -#}
    {%- if execute -%}
        {%- set files = var('bronze_files', {}) -%}
        {%- if not files and flags.WHICH not in ['test', 'source', 'docs', 'list', 'parse', 'compile'] -%}
            {{ exceptions.raise_compiler_error(
                "The spark target reads bronze at pinned Delta versions, from the files "
                ~ "deltalake lists for them, and no `bronze_files` var was given. Run "
                ~ "`lakehouse build --engine spark`, or pass them yourself: "
                ~ "dbt " ~ flags.WHICH ~ " --target spark --vars \"$(lakehouse dbt-vars --engine spark)\""
            ) }}
        {%- endif -%}
        {%- for source in graph.sources.values() if files -%}
            {%- if source.identifier not in files -%}
                {{ exceptions.raise_compiler_error(
                    "bronze_files has no files for bronze table " ~ source.identifier
                    ~ ": give every table (lakehouse dbt-vars --engine spark does)"
                ) }}
            {%- endif -%}
            {%- set relation = api.Relation.create(schema=source.schema, identifier=source.identifier) -%}
            {%- do run_query("create schema if not exists " ~ source.schema) -%}
            {%- do run_query(
                "create or replace view " ~ relation ~ " as select * from parquet.`"
                ~ files[source.identifier] ~ "`"
            ) -%}
        {%- endfor -%}
    {%- endif -%}
    select 1
{% endmacro %}


{% macro release_spark_tables() %}
    {#- After `lakehouse build --engine spark` into this warehouse file, its tables are views
        over Spark's Parquet, marked with a comment (lakehouse.warehouse.spark.VIEW_COMMENT).
        A DuckDB build writes tables of those names, so those views give way first. -#}
    {{ return(adapter.dispatch('release_spark_tables', 'lakehouse')()) }}
{% endmacro %}

{% macro duckdb__release_spark_tables() %}
    {%- if execute and flags.WHICH in ['build', 'run', 'seed', 'retry', 'clone'] -%}
        {%- set views = run_query(
            "select view_name from duckdb_views() where schema_name = '" ~ target.schema
            ~ "' and comment = 'lakehouse: a table of a Spark build'"
        ).columns[0].values() -%}
        {%- for view in views -%}
            {#- through the adapter, so dbt's relation cache forgets them too -#}
            {%- do adapter.drop_relation(api.Relation.create(
                database=target.database, schema=target.schema, identifier=view, type='view'
            )) -%}
        {%- endfor -%}
    {%- endif -%}
    select 1
{% endmacro %}

{% macro spark__release_spark_tables() %}
    select 1
{% endmacro %}


{% macro configure_object_store() %}
    {{ return(adapter.dispatch('configure_object_store', 'lakehouse')()) }}
{% endmacro %}

{% macro spark__configure_object_store() %}
    {%- if lake_root().startswith('s3://') -%}
        {{ exceptions.raise_compiler_error(
            "The spark target reads a local lake here: Spark's S3 connector (hadoop-aws) "
            ~ "comes from Maven, which this machine cannot reach. On a cluster that has it, "
            ~ "read the lake as s3a:// (docs/decisions/0011-spark.md)."
        ) }}
    {%- endif -%}
    select 1
{% endmacro %}

{% macro duckdb__configure_object_store() %}
    {#- dbt's DuckDB session (the delta extension, the S3 secret, the memory limit, UTC) is set
        up by the profile's plugin with the same code as every other connection:
        lakehouse.warehouse.duckdb_env.session_sql -#}
    select 1
{% endmacro %}
