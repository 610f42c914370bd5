{{
    config(
        unique_key='photo_id',
        incremental_strategy=upsert_strategy(),
    )
}}

-- Every caption labeling rule (seeds/caption_labeling_rules.csv) applied to every photo's
-- caption: one row per (photo, rule), `fired` when the rule matches, with the label the rule
-- votes for. A row for each rule, fired or not, so an edited caption that no rule matches any
-- more replaces its photo's old votes (incremental: the photos new or edited tonight).
-- Changing the rules seed needs `dbt build --full-refresh`.
--
-- In a run, the rules are read from the seed at compile time and each becomes its own branch
-- with a constant pattern, compiled once; joining patterns as a column made DuckDB compile a
-- regex per (photo, rule) pair (34 s instead of under 2 s on 250k photos). dbt unit tests
-- mock the seed, so there the rules are joined as data.

{%- set rules_relation = ref('caption_labeling_rules') -%}
{#- compiled where the warehouse holds no seed (sqlfluff, `dbt compile` on a fresh clone), the
    rules are joined as data, as in unit tests -#}
{%- set inline_rules = execute and model.resource_type == 'model' and adapter.get_relation(
    rules_relation.database, rules_relation.schema, rules_relation.identifier
) is not none -%}
{%- if inline_rules -%}
    {%- set rules = run_query(
        "select rule_name, pattern, label from " ~ rules_relation ~ " order by rule_name"
    ).rows -%}
{%- endif %}

with

photos as (
    select
        photo_id,
        caption
    from {{ ref('stg_app__photos') }} as photos
    where {{ loaded_since_last_run('photos') }}
),

{% if inline_rules -%}
votes as (
    {%- for rule in rules %}
    select
        photo_id,
        {{ dbt.string_literal(dbt.escape_single_quotes(rule[0])) }} as rule_name,
        {{ dbt.string_literal(dbt.escape_single_quotes(rule[2])) }} as label,
        coalesce({{ regex_matches('caption', dbt.string_literal(dbt.escape_single_quotes(rule[1]))) }}, false)
            as fired
    from photos
    {% if not loop.last %}union all{% endif %}
    {%- else %}
    select
        photo_id,
        cast(null as {{ dbt.type_string() }}) as rule_name,
        cast(null as {{ dbt.type_string() }}) as label,
        false as fired
    from photos
    where false
    {%- endfor %}
)
{%- else -%}
rules as (
    select
        rule_name,
        pattern,
        label
    from {{ rules_relation }}
),

votes as (
    select
        photos.photo_id,
        rules.rule_name,
        rules.label,
        coalesce({{ regex_matches('photos.caption', 'rules.pattern') }}, false) as fired
    from photos
    cross join rules
)
{%- endif %}

select
    *,
    {{ build_seq() }} as _build_seq
from votes
