{#- Small helpers shared by feature models. -#}

{% macro embedding_dim() -%}64{%- endmacro %}

{% macro deterministic_bucket(expression, buckets=100) -%}
    {#- A stable bucket in [0, buckets) from the md5 of a value: same id, same split, on any
        engine and any DuckDB release (unlike hash()). -#}
    {{ return(adapter.dispatch('deterministic_bucket', 'lakehouse')(expression, buckets)) }}
{%- endmacro %}

{% macro default__deterministic_bucket(expression, buckets) -%}
    mod(cast(conv(substr({{ dbt.hash(expression) }}, 1, 8), 16, 10) as bigint), {{ buckets }})
{%- endmacro %}

{% macro duckdb__deterministic_bucket(expression, buckets) -%}
    (cast(('0x' || substr(md5(cast({{ expression }} as varchar)), 1, 8)) as bigint) % {{ buckets }})
{%- endmacro %}
