{#- Data tests that read what a night wrote, not the whole history (issue 30;
    docs/decisions/0013-night-scoped-data-tests.md).

    dbt hands every generic test its model through `get_where_subquery` (dbt's documented
    place to filter what a test reads). On DuckDB this project narrows it, for a test of an
    incremental model that is not exported, to the rows this test has not passed yet: each
    row carries the build number that wrote it (`_build_seq`, macros/incremental.sql), and
    lakehouse_test_results says at which build this very test last passed. A row written or
    rewritten after that pass has a larger number; every other row was in the table, unchanged,
    when the test passed. Exactly what the test would find over the whole table:

    - row rules (not_null, accepted_values, accepted_range, expression_is_true, relationships
      from the child's side): the rows since the last pass;
    - uniqueness (unique, unique_combination_of_columns): every row whose key is among the
      rows since the last pass, so a new key that repeats an old one is found (two old rows
      with one key were found when the test last passed); of a model that holds the key's
      number (`_key_hash`, macros/keys.sql), the rows whose number more than one row holds
      among the numbers of the rows since the last pass;
    - a source's tests (bronze is append-only): the batches its Delta commits after the
      version this test last passed on added (lakehouse_bronze_batches_since, registered by
      the profile's plugin from deltalake's history); a commit that is not an ingest append
      (a rewrite, a delete) makes it read the whole table;
    - everything else (row counts, singular tests), tests of exported models (small, and the
      content the export ships: docs/decisions/0004), and every test on Spark: the whole
      table, as dbt does.

    Whole tables are also read on a schedule by build numbers, not clocks: a test whose last
    whole-table pass is `whole_table_tests_every` builds old (or that has none) reads the
    whole table, and so does every test of a `--full-refresh`. That catches what no build
    number shows: a row edited in place outside dbt. The scope a test ran with is written into
    its SQL as a marker comment, and record_model_builds stores it (`tested_since`). -#}

{% macro duckdb__get_where_subquery(relation) -%}
    {%- set filtered = dbt.default__get_where_subquery(relation) -%}
    {%- set scope = test_scope(relation) -%}
    {%- if scope is none -%}
        {{ return(filtered) }}
    {%- endif -%}
    {%- set where = config.get('where', '') or 'true' -%}
    {%- set kwargs = model.test_metadata.kwargs -%}
    {%- set marker = "/* " ~ night_scope_marker() ~ scope.rows ~ " " ~ scope.since ~ " */" -%}
    {%- if model.test_metadata.name == 'unique' and scope.key_hash == kwargs.column_name -%}
        {#- the model holds this key's number (macros/keys.sql): the numbers of tonight's
            keys that more than one row holds, read from the number column alone, then the
            rows with those numbers (none on a night with no repeat, and DuckDB stops a join
            whose build side is empty: no key is read).
            Every row of a key tonight repeats is among them, so the test finds exactly what
            the form below finds, plus any old repeat whose number a new key shares -#}
        {%- set night = "select _key_hash from " ~ relation ~ " where " ~ scope.predicate -%}
        {%- set scoped -%}
            (select * from {{ relation }} as tested where tested._key_hash in (
                select held._key_hash from {{ relation }} as held
                where held._key_hash in ({{ night }})
                group by held._key_hash having count(*) > 1
            ) and ({{ where }}) {{ marker }}) dbt_subquery
        {%- endset -%}
    {%- elif model.test_metadata.name in ['unique', 'unique_combination_of_columns'] -%}
        {%- set key = [kwargs.column_name] if model.test_metadata.name == 'unique'
            else kwargs.combination_of_columns -%}
        {%- set matches = [] -%}
        {%- for column in key -%}
            {%- do matches.append("night." ~ column ~ " is not distinct from tested." ~ column) -%}
        {%- endfor -%}
        {%- set scoped -%}
            (select * from (
                select tested.* from {{ relation }} as tested semi join (
                    select {{ key | join(', ') }} from {{ relation }} where {{ scope.predicate }}
                ) as night on {{ matches | join(' and ') }}
            ) where ({{ where }}) {{ marker }}) dbt_subquery
        {%- endset -%}
    {%- else -%}
        {%- set scoped -%}
            (select * from {{ relation }} where ({{ where }}) and {{ scope.predicate }} {{ marker }}) dbt_subquery
        {%- endset -%}
    {%- endif -%}
    {{ return(scoped) }}
{%- endmacro %}


{% macro night_scope_marker() -%}
    {#- how a test's SQL says what it read; tested_since (macros/lineage.sql) reads the number -#}
    {{ return("lakehouse test scope: ") }}
{%- endmacro %}


{% macro test_scope(relation) -%}
    {#- What this test reads of `relation`: none for the whole table, else
        {predicate: SQL over its rows, rows: what they are, since: the identity after which}
        (see the top of this file). -#}
    {%- if not execute or model.resource_type != 'test' or not model.test_metadata
        or flags.FULL_REFRESH -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set row_rules = ['not_null', 'accepted_values', 'accepted_range', 'expression_is_true',
        'relationships', 'unique', 'unique_combination_of_columns'] -%}
    {%- set results = adapter.get_relation(target.database, target.schema, 'lakehouse_test_results') -%}
    {%- set tested = tested_model(model) or '' -%}
    {%- if model.test_metadata.name not in row_rules or results is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set runs = lineage_table('lakehouse_dbt_runs') -%}
    {#- this test's passes, each with its invocation's build number -#}
    {%- set joined = "from " ~ results ~ " as tests join " ~ runs
        ~ " as runs on runs.invocation_id = tests.invocation_id" -%}
    {%- set passed = " where tests.model = " ~ sql_string(tested) ~ " and tests.test_name = "
        ~ sql_string(model.name) ~ " and tests.status = 'pass'" -%}
    {%- set schedule = "select (select max(runs.build_seq) " ~ joined ~ passed
        ~ " and tests.tested_since is null), (select max(build_seq) from " ~ runs ~ "), " -%}
    {%- if tested.startswith('source:') -%}
        {%- set table = tested.split(':', 1)[1] -%}
        {#- the Delta versions each pass read: none recorded yet (a first build was killed
            before its end hooks) means no pass to start from -#}
        {%- if relation.identifier != table or adapter.get_relation(
                target.database, target.schema, 'lakehouse_bronze_reads') is none -%}
            {{ return(none) }}
        {%- endif -%}
        {%- set since_sql = "(select reads.delta_version " ~ joined ~ " join "
            ~ lineage_table('lakehouse_bronze_reads') ~ " as reads on reads.invocation_id = "
            ~ "tests.invocation_id and reads.table_name = " ~ sql_string(table) ~ passed
            ~ " order by runs.build_seq desc limit 1)" -%}
    {%- else -%}
        {%- set node = graph.nodes.get('model.' ~ project_name ~ '.' ~ tested) -%}
        {%- if node is none or node.config.materialized != 'incremental'
            or (node.config.meta or {}).get('export') or relation.identifier != node.alias -%}
            {{ return(none) }}
        {%- endif -%}
        {%- set since_sql = "(select max(runs.build_seq) " ~ joined ~ passed ~ ")" -%}
    {%- endif -%}
    {%- set found = run_query(schedule ~ since_sql).rows[0] -%}
    {%- set last_whole, current, since = found[0], found[1], found[2] -%}
    {%- if since is none or last_whole is none
        or current - last_whole >= var('whole_table_tests_every') | int -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if not tested.startswith('source:') -%}
        {{ return({'predicate': '_build_seq > ' ~ since, 'rows': 'rows with _build_seq >',
            'since': since | int, 'key_hash': hashed_key(node)}) }}
    {%- endif -%}
    {%- set batches = fromjson(run_query("select coalesce(to_json(lakehouse_bronze_batches_since("
        ~ sql_string(table) ~ ", " ~ since ~ ", " ~ bronze_pin_sql(table) ~ ")), 'null')").rows[0][0]) -%}
    {%- if batches is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set ids = [] -%}
    {%- for batch in batches -%}
        {%- do ids.append(sql_string(batch)) -%}
    {%- endfor -%}
    {{ return({
        'predicate': '_batch_id in (' ~ ids | join(', ') ~ ')' if ids else 'false',
        'rows': 'batches committed after Delta version', 'since': since | int,
        'key_hash': none}) }}
{%- endmacro %}
