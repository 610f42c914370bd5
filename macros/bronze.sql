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
    {#- Spark: the version the build's first hook read the record for (spark_bronze_pins) -#}
    {%- set pinned = spark_bronze_pins().get(table) -%}
    {{ pinned if pinned is not none else 'null' }}
{%- endmacro %}


{% macro spark_bronze_pins() -%}
    {#- The Delta version of each bronze table this Spark warehouse's tables were last built
        from, and that build's as_of: the view lakehouse_bronze_pins, made by the first hook
        from the build's record (spark__assert_bronze_exists). {table: version, '': as_of} -#}
    {%- set pins = {} -%}
    {#- this command's first hook made it from the record, or an earlier build did (dbt's
        relation cache, read when the command started, does not know what a hook made) -#}
    {%- if execute and (var('bronze_record', none) or adapter.get_relation(
            database=none, schema=target.schema, identifier='lakehouse_bronze_pins')) -%}
        {%- for row in run_query("select table_name, version, as_of from "
                ~ target.schema ~ ".lakehouse_bronze_pins").rows -%}
            {%- do pins.update({row[0]: row[1], '': row[2]}) -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(pins) }}
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
        source becomes a view over exactly the Parquet files of its pinned Delta version.
        deltalake lists them; `lakehouse build --engine spark` (or `lakehouse dbt-vars
        --engine spark`, for a dbt command of your own) writes them to a record, one JSON line
        per file, whose path is the `bronze_record` var: the same path every night, so the
        vars stay small and dbt parses partially. Read here with Spark, so the record only has
        to be where the cluster can read it. The pinned versions and the night's as_of become
        the view lakehouse_bronze_pins (bronze_pin_sql, serving_as_of). Commands that build
        nothing from bronze (test, source freshness, docs) keep the views of the last build.
        docs/decisions/0011-spark.md -#}
    {%- if execute -%}
        {%- set record = var('bronze_record', none) -%}
        {%- if not record and flags.WHICH not in ['test', 'source', 'docs', 'list', 'parse', 'compile'] -%}
            {{ exceptions.raise_compiler_error(
                "The spark target reads bronze at pinned Delta versions, from a record of the "
                ~ "files deltalake lists for them, and no `bronze_record` var was given. Run "
                ~ "`lakehouse build --engine spark`, or write the record and pass it yourself: "
                ~ "dbt " ~ flags.WHICH ~ " --target " ~ target.name
                ~ " --vars \"$(lakehouse dbt-vars --engine spark)\""
            ) }}
        {%- endif -%}
        {%- if record -%}
            {%- set files = {} -%}
            {%- set pins = [] -%}
            {%- for row in run_query(
                "select table_name, version, file, as_of from json.`" ~ record ~ "` "
                ~ "order by table_name, file").rows -%}
                {%- if row[0] not in files -%}
                    {%- do files.update({row[0]: []}) -%}
                    {%- do pins.append("(" ~ sql_string(row[0]) ~ ", cast(" ~ row[1] ~ " as bigint), "
                        ~ (sql_string(row[3]) if row[3] else "cast(null as string)") ~ ")") -%}
                {%- endif -%}
                {%- do files[row[0]].append(row[2]) -%}
            {%- endfor -%}
            {%- for source in graph.sources.values() -%}
                {%- if source.identifier not in files -%}
                    {{ exceptions.raise_compiler_error(
                        "the bronze record " ~ record ~ " lists no files for bronze table "
                        ~ source.identifier ~ ": write it with `lakehouse dbt-vars --engine spark`"
                    ) }}
                {%- endif -%}
                {%- set relation = api.Relation.create(schema=source.schema, identifier=source.identifier) -%}
                {%- set folder = files[source.identifier][0].rsplit('/', 1)[0] -%}
                {%- set names = [] -%}
                {%- for file in files[source.identifier] -%}
                    {%- do names.append(file.rsplit('/', 1)[1]) -%}
                {%- endfor -%}
                {%- do run_query("create schema if not exists " ~ source.schema) -%}
                {%- do run_query(
                    "create or replace view " ~ relation ~ " as select * from parquet.`"
                    ~ folder ~ "/{" ~ names | join(",") ~ "}`"
                ) -%}
            {%- endfor -%}
            {%- do run_query("create schema if not exists " ~ target.schema) -%}
            {%- do run_query(
                "create or replace view " ~ target.schema ~ ".lakehouse_bronze_pins as "
                ~ "select * from values " ~ pins | join(", ") ~ " as pins(table_name, version, as_of)"
            ) -%}
        {%- endif -%}
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
