{#- Point-in-time join: for each left row, the right row of the same key with the latest
    timestamp strictly before the left row's timestamp. The right side must have one row per
    (key, timestamp). DuckDB has ASOF JOIN; other engines get a portable window-based form. -#}

{% macro point_in_time_join(left, right, key, left_ts, right_ts) -%}
    {{ return(adapter.dispatch('point_in_time_join', 'lakehouse')(left, right, key, left_ts, right_ts)) }}
{%- endmacro %}

{% macro duckdb__point_in_time_join(left, right, key, left_ts, right_ts) -%}
    {{ left }} as l
    asof left join {{ right }} as r
        on l.{{ key }} = r.{{ key }}
        and l.{{ left_ts }} > r.{{ right_ts }}
{%- endmacro %}

{% macro default__point_in_time_join(left, right, key, left_ts, right_ts) -%}
    {{ left }} as l
    left join (
        select
            *,
            lead({{ right_ts }}) over (partition by {{ key }} order by {{ right_ts }}) as _pit_next_ts
        from {{ right }}
    ) as r
        on l.{{ key }} = r.{{ key }}
        and r.{{ right_ts }} < l.{{ left_ts }}
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
