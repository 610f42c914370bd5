{#- Small helpers shared by feature models. -#}

{% macro embedding_dim() -%}
    {#- The embedding's size, as its bronze source declares it (data_type float[N] of
        photo_embeddings.embedding, models/staging/ml/_ml__sources.yml): stated once. The
        graph is known only when dbt executes; a parse renders a placeholder. -#}
    {%- if not execute -%}{{ return(1) }}{%- endif -%}
    {%- set declared = graph.sources.values() | selectattr('identifier', 'equalto', 'photo_embeddings') | list -%}
    {%- set data_type = declared[0].columns['embedding'].data_type if declared else '' -%}
    {%- if not data_type.startswith('float[') -%}
        {{ exceptions.raise_compiler_error(
            "the photo_embeddings source must declare its embedding column as float[N] "
            ~ "(models/staging/ml/_ml__sources.yml), found '" ~ data_type ~ "'"
        ) }}
    {%- endif -%}
    {{ return(data_type[6:-1] | int) }}
{%- endmacro %}

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
