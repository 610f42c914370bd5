{#- The engine's names for the project's own types and constants, so models stay one SQL for
    DuckDB and Spark (docs/decisions/0011-spark.md). -#}

{% macro timestamp_tz() -%}
    {#- an instant (UTC): DuckDB's timestamp with time zone, Spark's timestamp -#}
    {{ return(adapter.dispatch('timestamp_tz', 'lakehouse')()) }}
{%- endmacro %}

{% macro default__timestamp_tz() -%}timestamp with time zone{%- endmacro %}

{% macro spark__timestamp_tz() -%}timestamp{%- endmacro %}


{% macro timestamp_literal(value) -%}
    {#- an instant written as text ('2026-10-01 12:00:00.000000+00'), or '-infinity' /
        'infinity' (before / after everything) -#}
    {{ return(adapter.dispatch('timestamp_literal', 'lakehouse')(value)) }}
{%- endmacro %}

{% macro default__timestamp_literal(value) -%}
    cast('{{ value }}' as {{ timestamp_tz() }})
{%- endmacro %}

{% macro spark__timestamp_literal(value) -%}
    {#- Spark's timestamps have no infinities: its smallest and largest ones stand in -#}
    {%- if value == '-infinity' -%}
        timestamp '0001-01-01 00:00:00'
    {%- elif value == 'infinity' -%}
        timestamp '9999-12-31 23:59:59.999999'
    {%- else -%}
        cast('{{ value }}' as timestamp)
    {%- endif -%}
{%- endmacro %}


{% macro embedding_type() -%}
    {#- the image embedding: embedding_dim() floats -#}
    {{ return(adapter.dispatch('embedding_type', 'lakehouse')()) }}
{%- endmacro %}

{% macro default__embedding_type() -%}float[{{ embedding_dim() }}]{%- endmacro %}

{% macro spark__embedding_type() -%}array<float>{%- endmacro %}
