{#- The project's own generic tests (no dbt hub packages can be downloaded here). Each
    returns the failing rows, so dbt reports how many and can store them. -#}

{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}
    select *
    from {{ model }}
    where {{ column_name }} is not null
      and (
        {%- if min_value is not none %}
        {{ column_name }} {{ '<' if inclusive else '<=' }} {{ min_value }}
        {%- else %} false {%- endif %}
        or
        {%- if max_value is not none %}
        {{ column_name }} {{ '>' if inclusive else '>=' }} {{ max_value }}
        {%- else %} false {%- endif %}
      )
{% endtest %}


{% test expression_is_true(model, expression, column_name=none) %}
    select *
    from {{ model }}
    where not coalesce(({{ expression }}), false)
{% endtest %}


{% test unique_combination_of_columns(model, combination_of_columns) %}
    select {{ combination_of_columns | join(', ') }}, count(*) as occurrences
    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}
    having count(*) > 1
{% endtest %}


{% test row_count_relation(model, compare_model, relation='=', compare_filter='true') %}
    {#- Fails when count(model) <relation> count(compare_model where compare_filter) is false. -#}
    with counts as (
        select
            (select count(*) from {{ model }}) as model_rows,
            (select count(*) from {{ compare_model }} where {{ compare_filter }}) as compare_rows
    )
    select * from counts
    where not (model_rows {{ relation }} compare_rows)
{% endtest %}
