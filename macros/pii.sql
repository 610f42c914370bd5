{#- Personal data leaves staging only as a salted hash. The salt comes from the environment
    (LAKEHOUSE_PII_SALT); the default is for sample data only. -#}

{% macro hash_pii(column) -%}
    {{ return(adapter.dispatch('hash_pii', 'lakehouse')(column)) }}
{%- endmacro %}

{% macro default__hash_pii(column) -%}
    case when {{ column }} is null then null
    else {{ dbt.hash(dbt.concat(["'" ~ pii_salt() ~ "'", "lower(trim(" ~ column ~ "))"])) }} end
{%- endmacro %}

{% macro duckdb__hash_pii(column) -%}
    case when {{ column }} is null then null
    else sha256('{{ pii_salt() }}' || lower(trim({{ column }}))) end
{%- endmacro %}

{% macro pii_salt() -%}
    {{ return(env_var('LAKEHOUSE_PII_SALT', 'sample-data-salt-not-a-secret')) }}
{%- endmacro %}
