{#- Spark implementations of dbt's own macros where dbt-spark's differ from DuckDB's in a way
    that changes results or cannot read this project's contracts. They take effect through
    dbt_project.yml's `dispatch` (the dbt namespace searches this project first) and only on
    Spark: DuckDB keeps dbt-duckdb's. -#}

{% macro spark__dateadd(datepart, interval, from_date_or_timestamp) -%}
    {#- dbt-spark's goes through unix seconds and drops the microseconds, so an event a
        fraction of a second inside a window fell outside it; timestampadd keeps them -#}
    timestampadd({{ datepart }}, {{ interval }}, {{ from_date_or_timestamp }})
{%- endmacro %}


{% macro spark__get_empty_schema_sql(columns) -%}
    {#- Contracts are written once, in DuckDB's type names (the warehouse the loader reads);
        the contract check on Spark reads them in Spark's names. -#}
    {%- set spark_names = {
        'varchar': 'string',
        'timestamp with time zone': 'timestamp',
        ('float[' ~ embedding_dim() ~ ']'): embedding_type(),
    } -%}
    {%- set translated = {} -%}
    {%- for name, column in columns.items() -%}
        {%- set data_type = column['data_type'] -%}
        {%- if data_type is not none and data_type.strip().lower() in spark_names -%}
            {%- set column = column.copy() -%}
            {%- do column.update({'data_type': spark_names[data_type.strip().lower()]}) -%}
        {%- endif -%}
        {%- do translated.update({name: column}) -%}
    {%- endfor -%}
    {{ return(dbt.default__get_empty_schema_sql(translated)) }}
{%- endmacro %}


{% macro spark__escape_single_quotes(expression) -%}
    {#- Spark's string literals read backslash escapes (DuckDB's do not), so a backslash is
        doubled too: a regex's \b stays \b, not a backspace -#}
    {{ expression | replace("\\", "\\\\") | replace("'", "\\'") }}
{%- endmacro %}


{% macro spark__load_csv_rows(model, agate_table) %}
    {#- dbt-spark's session method pastes seed values into SQL unescaped, so a value holding
        a quote broke the insert: each value here is an escaped literal, cast as dbt-spark
        casts it -#}
    {%- set column_override = model['config'].get('column_types', {}) -%}
    {%- set statements = [] -%}
    {%- for chunk in agate_table.rows | batch(get_batch_size()) -%}
        {%- set sql -%}
            insert into {{ this.render() }} values
            {% for row in chunk -%}
                ({%- for col_name in agate_table.column_names -%}
                    {%- set type = column_override.get(col_name, adapter.convert_type(agate_table, loop.index0)) -%}
                    {%- set value = row[loop.index0] -%}
                    {%- if value is none -%}
                        cast(null as {{ type }})
                    {%- else -%}
                        cast({{ dbt.string_literal(dbt.escape_single_quotes(value | string)) }} as {{ type }})
                    {%- endif -%}
                    {{- "," if not loop.last }}
                {%- endfor -%}){{ "," if not loop.last }}
            {% endfor %}
        {%- endset -%}
        {%- do adapter.add_query(sql, abridge_sql_log=True) -%}
        {%- do statements.append(sql) if loop.first -%}
    {%- endfor -%}
    {{ return(statements[0]) }}
{% endmacro %}
