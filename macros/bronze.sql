{#- Reading the bronze Delta tables: where they are, which version, and a clear error
    when they are not there. -#}

{% macro lake_root() -%}
    {#- --vars '{lake_root: ...}' wins over LAKEHOUSE_LAKE; the demo lake is the default -#}
    {{ var('lake_root', env_var('LAKEHOUSE_LAKE', 'data/demo/lake')).rstrip('/') }}
{%- endmacro %}


{% macro bronze_path(table) -%}
    {{ lake_root() }}/bronze/{{ table }}
{%- endmacro %}


{% macro bronze_version(table) -%}
    {{ return(var('bronze_versions', {}).get(table)) }}
{%- endmacro %}


{% macro bronze_scan(table) -%}
    {%- set version = bronze_version(table) -%}
    delta_scan('{{ bronze_path(table) }}'{% if version is not none %}, version => {{ version }}{% endif %})
{%- endmacro %}


{% macro load_delta_extension() %}
    {%- if execute -%}
        {%- set found = run_query(
            "select count(*) from duckdb_extensions() where extension_name = 'delta' and installed"
        ).columns[0].values()[0] -%}
        {%- if found == 0 -%}
            {{ exceptions.raise_compiler_error(
                "DuckDB's delta extension is not installed in the extension directory of this "
                ~ "profile. Run `make setup` (or `lakehouse build`), which installs it from the "
                ~ "duckdb-extension-delta wheel; nothing is downloaded."
            ) }}
        {%- endif -%}
    {%- endif -%}
    load delta
{% endmacro %}


{% macro assert_bronze_exists(tables) %}
    {%- if execute -%}
        {%- for table in tables -%}
            {%- set commits = run_query(
                "select count(*) from glob('" ~ bronze_path(table) ~ "/_delta_log/*.json')"
            ).columns[0].values()[0] -%}
            {%- if commits == 0 -%}
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


{% macro latest_bronze_version_sql(table) -%}
    select max(cast(regexp_extract(file, '(\d+)\.json$', 1) as bigint))
    from glob('{{ bronze_path(table) }}/_delta_log/*.json')
{%- endmacro %}


{% macro record_bronze_reads(tables) %}
    {#- Which Delta version of each bronze table this invocation read, for the exporter's
        lineage manifest. Pinned versions are exact; unpinned ones are the latest at the
        end of the run (pin with `lakehouse build` for an exact record). -#}
    {%- if execute -%}
        create table if not exists {{ target.schema }}.lakehouse_bronze_reads (
            invocation_id varchar,
            table_name varchar,
            delta_version bigint,
            pinned boolean,
            recorded_at timestamp with time zone
        );
        {% for table in tables -%}
            {%- set pinned = bronze_version(table) -%}
            insert into {{ target.schema }}.lakehouse_bronze_reads
            select
                '{{ invocation_id }}',
                '{{ table }}',
                {% if pinned is not none %}{{ pinned }}{% else %}({{ latest_bronze_version_sql(table) }}){% endif %},
                {{ 'true' if pinned is not none else 'false' }},
                current_timestamp;
        {% endfor -%}
    {%- endif -%}
{% endmacro %}


{% macro configure_object_store() %}
    {#- A lake on S3-compatible storage: httpfs + aws, and a secret whose keys come from the
        AWS_* environment at run time (credential chain), so none is written into SQL, logs
        or run results. Same statements as lakehouse.warehouse.object_store_sql. -#}
    {%- set lake = lake_root() -%}
    {%- if lake.startswith('s3://') -%}
        {%- set endpoint = env_var('AWS_ENDPOINT_URL', '') -%}
        load httpfs;
        load aws;
        create or replace secret lakehouse_s3 (
            type s3, provider credential_chain, chain 'env',
            region '{{ env_var("AWS_REGION", "us-east-1") }}'
            {%- if endpoint %},
            endpoint '{{ endpoint.split("://")[-1].rstrip("/") }}',
            url_style 'path',
            use_ssl {{ 'false' if endpoint.startswith('http://') else 'true' }}
            {%- endif %}
        )
    {%- else -%}
        select 1
    {%- endif -%}
{% endmacro %}


{% macro record_run_start() %}
    {#- Every invocation says it started; record_bronze_reads says it finished. The exporter
        refuses a warehouse whose latest invocation never finished (killed mid-build: some
        models rebuilt, others not). -#}
    {%- if execute -%}
        create table if not exists {{ target.schema }}.lakehouse_dbt_runs (
            invocation_id varchar,
            started_at timestamp with time zone
        );
        insert into {{ target.schema }}.lakehouse_dbt_runs
        values ('{{ invocation_id }}', current_timestamp);
    {%- endif -%}
{% endmacro %}
