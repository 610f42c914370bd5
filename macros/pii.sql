{#- Personal data leaves staging only as HMAC-SHA256 keyed by LAKEHOUSE_PII_SALT. The key never
    appears in SQL: lakehouse.warehouse.dbt_plugin (profiles.yml) sets the HMAC pads as DuckDB
    session variables, and the SQL below only names them, so compiled SQL, dbt's artifacts
    and logs hold no key (docs/decisions/0007-security-model.md). -#}

{% macro hash_pii(column) -%}
    {{ return(adapter.dispatch('hash_pii', 'lakehouse')(column)) }}
{%- endmacro %}

{% macro default__hash_pii(column) -%}
    {{ exceptions.raise_compiler_error(
        "hash_pii has no implementation for " ~ target.type ~ ": the PII key must reach the "
        ~ "engine outside SQL text (see lakehouse.warehouse.dbt_plugin for DuckDB)"
    ) }}
{%- endmacro %}

{% macro duckdb__hash_pii(column) -%}
    case when {{ column }} is null then null
    else sha256(
        getvariable('lakehouse_pii_outer')
        || unhex(sha256(getvariable('lakehouse_pii_inner') || encode(lower(trim({{ column }})))))
    ) end
{%- endmacro %}
