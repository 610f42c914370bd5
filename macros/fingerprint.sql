{#- What the gate passed, bound to the data (docs/decisions/0004): every model that declares
    `meta.export` records the fingerprint of its table just before and just after each build
    writes it, in the build's own transaction (dbt runs both hooks inside it), so any change
    made outside dbt between two builds, or after the gate, breaks the chain the gate follows
    from the content it last passed (lakehouse.quality.runner). The fingerprint is the row
    count and an order-free sum of DuckDB's row hashes: lakehouse.warehouse.fingerprint
    computes the same SQL in Python (tests/test_contracts.py checks they agree). -#}

{% macro record_fingerprint(phase) %}
    {{ return(adapter.dispatch('record_fingerprint', 'lakehouse')(phase)) }}
{% endmacro %}

{% macro default__record_fingerprint(phase) %}
    {#- Spark records none (its nights write a keyed model's next version whole, and the
        gate reads the tables through DuckDB views): a model without a chain is checked row
        by row in full by the gate -#}
    select 1
{% endmacro %}

{% macro duckdb__record_fingerprint(phase) %}
    {%- if execute and (config.get('meta') or {}).get('export') -%}
        {#- before a model's first build there is no table; after the build there always is
            (dbt's relation cache does not know that yet when the hook is rendered) -#}
        {%- set missing = phase == 'before'
            and adapter.get_relation(this.database, this.schema, this.identifier) is none -%}
        {%- set head = "select " ~ sql_string(invocation_id) ~ ", " ~ build_seq() ~ ", "
            ~ sql_string(this.identifier) ~ ", " ~ sql_string(phase) ~ ", " -%}
        {{ create_lineage_table('lakehouse_model_fingerprints') }};
        {{ insert_lineage('lakehouse_model_fingerprints',
            head ~ "0, 0" if missing
            else head ~ "count(*), coalesce(sum(hash(fingerprinted)), 0) from " ~ this ~ " as fingerprinted") }}
    {%- else -%}
        select 1
    {%- endif -%}
{% endmacro %}
