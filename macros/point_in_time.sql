{#- Point-in-time join: for each left row, the right row of the same key with the latest
    timestamp strictly before the left row's timestamp. `key` is a column or a list of them.
    The right side must have one row per (key, timestamp). DuckDB has ASOF JOIN; other
    engines get a portable window-based form. -#}

{% macro point_in_time_join(left, right, key, left_ts, right_ts) -%}
    {{ return(adapter.dispatch('point_in_time_join', 'lakehouse')(left, right, key, left_ts, right_ts)) }}
{%- endmacro %}

{% macro _pit_keys(key) -%}
    {{ return([key] if key is string else key) }}
{%- endmacro %}

{% macro duckdb__point_in_time_join(left, right, key, left_ts, right_ts) -%}
    {{ left }} as l
    asof left join {{ right }} as r
        on
        {%- for column in _pit_keys(key) %} l.{{ column }} = r.{{ column }} and{% endfor %}
        l.{{ left_ts }} > r.{{ right_ts }}
{%- endmacro %}

{% macro default__point_in_time_join(left, right, key, left_ts, right_ts) -%}
    {{ left }} as l
    left join (
        select
            *,
            lead({{ right_ts }}) over (
                partition by {{ _pit_keys(key) | join(', ') }} order by {{ right_ts }}
            ) as _pit_next_ts
        from {{ right }}
    ) as r
        on
        {%- for column in _pit_keys(key) %} l.{{ column }} = r.{{ column }} and{% endfor %}
        r.{{ right_ts }} < l.{{ left_ts }}
        and (r._pit_next_ts is null or r._pit_next_ts >= l.{{ left_ts }})
{%- endmacro %}


{% macro regex_matches(value, pattern) -%}
    {{ return(adapter.dispatch('regex_matches', 'lakehouse')(value, pattern)) }}
{%- endmacro %}

{% macro default__regex_matches(value, pattern) -%}
    {{ value }} rlike {{ pattern }}
{%- endmacro %}

{% macro duckdb__regex_matches(value, pattern) -%}
    regexp_matches({{ value }}, {{ pattern }})
{%- endmacro %}
