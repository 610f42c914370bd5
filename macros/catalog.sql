{#- dbt docs' catalog (catalog.json): dbt-duckdb's query of the relations DuckDB knows, plus
    the bronze sources. A source is a Delta table read with delta_scan (dbt_project.yml's
    location template), not a relation in the warehouse, so dbt-duckdb's query never sees
    it: its columns and types come from DESCRIBE of the source as the models read it (at the
    pinned version, if any). A bronze table not ingested yet is left out, not an error. -#}

{% macro duckdb__get_catalog(information_schema, schemas) -%}
    {{ return(catalog_with_bronze(
        information_schema, duckdb__get_catalog_schemas_where_clause_sql(schemas))) }}
{%- endmacro %}


{% macro duckdb__get_catalog_relations(information_schema, relations) -%}
    {{ return(catalog_with_bronze(
        information_schema, duckdb__get_catalog_relations_where_clause_sql(relations))) }}
{%- endmacro %}


{% macro catalog_with_bronze(information_schema, where) -%}
    {#- dbt-duckdb's catalog query, its tables and columns filtered by `where`, with the
        bronze sources' rows added (those ingested: bronze_ingested, in macros/bronze.sql) -#}
    {%- set sources = [] -%}
    {%- for source in graph.sources.values() | sort(attribute='unique_id') -%}
        {%- if source.database | upper == information_schema.database | upper
            and bronze_ingested(source.identifier) -%}
            {%- do sources.append(source) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set query -%}
        with tables as (
            {{ duckdb__get_catalog_tables_sql(information_schema) }}
            {{ where }}
            {{ bronze_catalog_sql(sources, 'tables') }}
        ),
        columns as (
            {{ duckdb__get_catalog_columns_sql(information_schema) }}
            {{ where }}
            {{ bronze_catalog_sql(sources, 'columns') }}
        )
        {{ duckdb__get_catalog_results_sql() }}
    {%- endset -%}
    {{ return(run_query(query)) }}
{%- endmacro %}


{% macro bronze_catalog_sql(sources, part) -%}
    {#- `union all` rows for the bronze `sources` (ingested, in this database): one per table
        ('tables') or one per column ('columns'), shaped like dbt-duckdb's catalog queries. -#}
    {%- for source in sources %}
    union all
        {%- set names -%}
            '{{ source.database }}' as table_database,
            '{{ source.schema }}' as table_schema,
            '{{ source.identifier }}' as table_name
        {%- endset -%}
        {%- if part == 'tables' %}
    select {{ names }}, 'DELTA TABLE' as table_type, null as table_comment
        {%- else %}
    select
        {{ names }},
        column_name,
        row_number() over () as column_index,
        column_type,
        null as column_comment
    from (describe select * from {{ source.relation_name }})
        {%- endif -%}
    {%- endfor -%}
{%- endmacro %}
