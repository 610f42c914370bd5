{#- A model's key held as a number beside it (`_key_hash`), for the night's `unique` test of
    it (macros/tests/night_scope.sql), which asks whether tonight's keys repeat any held
    already. That probe read the key column of every row ever written; it now reads an 8-byte
    number instead of a string it would hash, and the keys of only the rows whose numbers
    repeat: none on a night without a repeat (issue 30; decision 0013). Staging's check for
    re-sent events still compares the keys themselves (macros/staging.sql): a night with
    re-sent rows, most nights, would read both.

    A model that holds one names its key in its config (`meta: {key_hash: event_id}`) and
    writes `{{ key_hash() }} as _key_hash`. The number is the first 15 hex digits of the
    key's md5: a standard function, so the value is the same on DuckDB and Spark and on every
    version of either (DuckDB's own hash() is not promised stable across versions, and a
    changed hash would silently miss repeats), and 60 bits fit a bigint on both. It only
    narrows: the test counts the keys themselves among the rows whose numbers match. -#}

{% macro key_hash(column=none) -%}
    {%- set column = column or hashed_key() -%}
    {%- if column is none and not execute -%}
        {{ return('cast(null as bigint)') }}  {#- parsing: dbt reads a model's config after it -#}
    {%- elif column is none -%}
        {{ exceptions.raise_compiler_error(
            "key_hash(): " ~ model.name ~ " names no key_hash in its config meta") }}
    {%- endif -%}
    {{ return(adapter.dispatch('key_hash', 'lakehouse')(column)) }}
{%- endmacro %}

{% macro default__key_hash(column) -%}
    cast(('0x' || left(md5(cast({{ column }} as varchar)), 15)) as bigint)
{%- endmacro %}

{% macro spark__key_hash(column) -%}
    cast(conv(left(md5(cast({{ column }} as string)), 15), 16, 10) as bigint)
{%- endmacro %}


{% macro hashed_key(node=none) -%}
    {#- The key whose number a model holds in `_key_hash` (its config's meta.key_hash), or
        none: of `node` (from dbt's graph), else of the model being compiled -#}
    {%- set meta = node.config.meta if node is not none else config.get('meta') -%}
    {{ return((meta or {}).get('key_hash')) }}
{%- endmacro %}


{% macro add_key_hashes() -%}
    {#- `dbt run-operation add_key_hashes`: a warehouse built before its models held their
        keys' numbers gets the column, filled from the keys it holds, instead of a
        `--full-refresh` (an incremental model refuses a changed schema: on_schema_change
        fail). Models that hold the column already are left as they are. -#}
    {%- for node in graph.nodes.values() if node.resource_type == 'model' and hashed_key(node) -%}
        {%- set relation = adapter.get_relation(node.database, node.schema, node.alias) -%}
        {%- set columns = adapter.get_columns_in_relation(relation) | map(attribute='name') | list
            if relation is not none else ['_key_hash'] -%}
        {%- if '_key_hash' not in columns -%}
            {%- do run_query('alter table ' ~ relation ~ ' add column _key_hash bigint') -%}
            {%- do run_query('update ' ~ relation ~ ' set _key_hash = '
                ~ key_hash(hashed_key(node))) -%}
            {%- do adapter.commit() -%}
            {{ log(relation ~ ": _key_hash added, the number of " ~ hashed_key(node), info=true) }}
        {%- endif -%}
    {%- endfor -%}
{%- endmacro %}
