{#- The build's lineage: what each dbt invocation started, read, built and tested, and the
    fingerprints of the exported marts. Written here only, by the project's hooks, and read
    only by lakehouse.warehouse.lineage (and the incremental cursor, macros/incremental.sql).
    Each table's columns are declared once, in lineage_columns(). -#}

{% macro lineage_columns() -%}
    {#- table -> [(column, type)]; `string` and `timestamp` become the target's types -#}
    {{ return({
        'lakehouse_dbt_runs': [
            ('invocation_id', 'string'), ('started_at', 'timestamp'), ('build_seq', 'bigint')],
        'lakehouse_bronze_reads': [
            ('invocation_id', 'string'), ('table_name', 'string'), ('delta_version', 'bigint'),
            ('pinned', 'boolean'), ('recorded_at', 'timestamp')],
        'lakehouse_model_builds': [
            ('invocation_id', 'string'), ('model', 'string'), ('status', 'string'),
            ('recorded_at', 'timestamp')],
        'lakehouse_test_results': [
            ('invocation_id', 'string'), ('model', 'string'), ('test_name', 'string'),
            ('status', 'string'), ('failures', 'bigint'), ('recorded_at', 'timestamp'),
            ('tested_since', 'bigint')],
        'lakehouse_model_fingerprints': [
            ('invocation_id', 'string'), ('build_seq', 'bigint'), ('model', 'string'),
            ('phase', 'string'), ('row_count', 'bigint'), ('row_hash', 'hugeint')],
    }) }}
{%- endmacro %}


{% macro lineage_table(name) -%}
    {%- if name not in lineage_columns() -%}
        {{ exceptions.raise_compiler_error("no lineage table " ~ name ~ " in lineage_columns()") }}
    {%- endif -%}
    {{ return(target.schema ~ '.' ~ name) }}
{%- endmacro %}


{% macro lineage_type(type) -%}
    {{ return(dbt.type_string() if type == 'string'
        else timestamp_tz() if type == 'timestamp' else type) }}
{%- endmacro %}


{% macro create_lineage_table(name) -%}
    {%- set columns = [] -%}
    {%- for column, type in lineage_columns()[name] -%}
        {%- do columns.append(column ~ ' ' ~ lineage_type(type)) -%}
    {%- endfor -%}
    {{ return("create table if not exists " ~ lineage_table(name) ~ " (" ~ columns | join(", ") ~ ")") }}
{%- endmacro %}


{% macro upgrade_lineage_tables() -%}
    {#- A warehouse from before a lineage column was declared (build numbers, night-scoped
        tests) gets the column, null in its old rows, on any engine: the statements that add
        what lineage_columns() declares and the existing tables lack -#}
    {%- set statements = [] -%}
    {%- for name, declared in lineage_columns().items() -%}
        {%- set relation = adapter.get_relation(
            database=target.database, schema=target.schema, identifier=name) -%}
        {%- if relation is not none -%}
            {%- set present = [] -%}
            {%- for column in adapter.get_columns_in_relation(relation) -%}
                {%- do present.append(column.name | lower) -%}
            {%- endfor -%}
            {%- for column, type in declared if column not in present -%}
                {%- do statements.append(add_lineage_column(lineage_table(name), column, lineage_type(type))) -%}
            {%- endfor -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(statements) }}
{%- endmacro %}


{% macro add_lineage_column(table, column, sql_type) -%}
    {{ return(adapter.dispatch('add_lineage_column', 'lakehouse')(table, column, sql_type)) }}
{%- endmacro %}

{% macro default__add_lineage_column(table, column, sql_type) -%}
    {{ return("alter table " ~ table ~ " add column " ~ column ~ " " ~ sql_type) }}
{%- endmacro %}

{% macro spark__add_lineage_column(table, column, sql_type) -%}
    {{ return("alter table " ~ table ~ " add columns (" ~ column ~ " " ~ sql_type ~ ")") }}
{%- endmacro %}


{% macro insert_lineage(name, rows) -%}
    {#- `rows`: a list of rows, each a list of SQL expressions in the declared column order,
        or one `select` whose columns are in that order -#}
    {%- set columns = [] -%}
    {%- for column, _ in lineage_columns()[name] -%}
        {%- do columns.append(column) -%}
    {%- endfor -%}
    {%- set head = "insert into " ~ lineage_table(name) ~ " (" ~ columns | join(", ") ~ ") " -%}
    {%- if rows is string -%}
        {{ return(head ~ rows) }}
    {%- endif -%}
    {%- set values = [] -%}
    {%- for row in rows -%}
        {%- do values.append("(" ~ row | join(", ") ~ ")") -%}
    {%- endfor -%}
    {{ return(head ~ "values " ~ values | join(", ")) }}
{%- endmacro %}


{% macro sql_string(value) -%}
    {{ return("'" ~ (value | string | replace("'", "''")) ~ "'") }}
{%- endmacro %}


{% macro run_statements(statements) %}
    {#- Run each statement on its own (Spark runs one per call), then nothing more -#}
    {%- for statement in statements -%}
        {%- do run_query(statement) -%}
    {%- endfor -%}
    select 1
{% endmacro %}


{% macro record_run_start() %}
    {#- Every invocation says it started, with its build number: one more than any before it
        in this warehouse (models stamp their rows with it, macros/incremental.sql);
        record_bronze_reads says it finished. The exporter refuses a warehouse whose latest
        invocation never finished (killed mid-build: some models rebuilt, others not). -#}
    {%- if execute -%}
        {%- set runs = lineage_table('lakehouse_dbt_runs') -%}
        {%- set statements = upgrade_lineage_tables() -%}
        {%- do statements.append(create_lineage_table('lakehouse_dbt_runs')) -%}
        {%- if target.type == 'duckdb' -%}
            {#- read by the night's scoped tests (macros/tests/night_scope.sql) -#}
            {%- do statements.append(create_lineage_table('lakehouse_test_results')) -%}
        {%- endif -%}
        {%- do statements.append(insert_lineage('lakehouse_dbt_runs',
            "select " ~ sql_string(invocation_id) ~ ", current_timestamp, "
            ~ "coalesce(max(build_seq), 0) + 1 from " ~ runs
        )) -%}
        {%- set done = run_statements(statements) -%}
        {#- reading a table's columns (upgrade_lineage_tables) opens a transaction on DuckDB,
            which the hooks would otherwise roll back -#}
        {%- do adapter.commit() -%}
        {{ return(done) }}
    {%- endif -%}
{% endmacro %}


{% macro record_bronze_reads() %}
    {#- Which Delta version of each bronze table this invocation read, for the exporter's
        lineage manifest: the version the session pinned (bronze_pin_sql), or null where
        none was (Spark without pins). A table's version is learned in one place, by
        deltalake in Python, never re-derived here from the log's files. -#}
    {%- if execute -%}
        {%- set rows = [] -%}
        {%- for table in bronze_tables() -%}
            {%- set pinned = bronze_pin_sql(table) | trim -%}
            {%- do rows.append([
                sql_string(invocation_id), sql_string(table),
                "cast(" ~ pinned ~ " as bigint)",
                "(" ~ pinned ~ ") is not null", 'current_timestamp']) -%}
        {%- endfor -%}
        {{ return(run_statements([
            create_lineage_table('lakehouse_bronze_reads'),
            insert_lineage('lakehouse_bronze_reads', rows)])) }}
    {%- endif -%}
{% endmacro %}


{% macro tested_model(test) -%}
    {#- What a data test is written for: the model its YAML attaches it to (else the one
        model it reads), or source:<bronze table> for a test of a source; none for a seed. -#}
    {%- set attached = test.attached_node or '' -%}
    {%- if not attached -%}
        {%- set models = [] -%}
        {%- for node in test.depends_on.nodes if node.startswith('model.') -%}
            {%- do models.append(node) -%}
        {%- endfor -%}
        {%- set attached = models[0] if models | length == 1 else '' -%}
    {%- endif -%}
    {%- if attached.startswith('model.') -%}
        {{ return(attached.split('.')[-1]) }}
    {%- endif -%}
    {#- a source's own test tests the source its `model` argument names (a relationships
        test also depends on the source it refers to) -#}
    {%- set tested = (test.test_metadata.kwargs.model if test.test_metadata else '') or '' -%}
    {%- set found = modules.re.search("source\\(\\s*'(\\w+)'\\s*,\\s*'(\\w+)'\\s*\\)", tested) -%}
    {%- if found -%}
        {%- for source in graph.sources.values() -%}
            {%- if source.source_name == found.group(1) and source.name == found.group(2) -%}
                {{ return('source:' ~ source.identifier) }}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(none) }}
{%- endmacro %}


{% macro tested_since(test) -%}
    {#- The identity a test read the rows after (macros/tests/night_scope.sql): a build
        number, or a Delta version for a source; as SQL, 'null' when it read the whole table -#}
    {%- set found = modules.re.search(night_scope_marker() ~ "[^*]*?(\\d+) \\*/",
        test.compiled_code or '') -%}
    {{ return(found.group(1) if found else 'null') }}
{%- endmacro %}


{% macro record_model_builds() %}
    {#- Which models this invocation built, from dbt's own results: the lineage of a model is
        the latest invocation that built it successfully, so a failed build, or a partial
        one that did not touch it, never becomes what export's manifest names.
        And the verdict of each data test written for a model (lakehouse_test_results): one
        row per test this invocation ran, and a 'not run' row per test of a model it built
        but did not test, so the gate knows every rule the built content must pass
        (lakehouse.warehouse.lineage.test_verdict). Written before the model rows: a
        recorded build always has its tests recorded. -#}
    {%- if execute -%}
        {%- set statements = [
            create_lineage_table('lakehouse_test_results'),
            create_lineage_table('lakehouse_model_builds')] -%}
        {%- set tests = [] -%}
        {%- set ran = [] -%}
        {%- for result in results if result.node.resource_type == 'test' -%}
            {%- set model = tested_model(result.node) -%}
            {%- if model -%}
                {%- do ran.append(result.node.unique_id) -%}
                {%- do tests.append([
                    sql_string(invocation_id), sql_string(model), sql_string(result.node.name),
                    sql_string(result.status),
                    result.failures if result.failures is number else 'null',
                    'current_timestamp', tested_since(result.node)]) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- set built = [] -%}
        {%- for result in results if result.node.resource_type == 'model' and result.status == 'success' -%}
            {%- do built.append(result.node.name) -%}
        {%- endfor -%}
        {%- if flags.WHICH in ['build', 'run', 'retry'] -%}
            {#- an invocation that read bronze: its sources' tests are the bronze rules -#}
            {%- for source in graph.sources.values() -%}
                {%- do built.append('source:' ~ source.identifier) -%}
            {%- endfor -%}
        {%- endif -%}
        {%- for node in graph.nodes.values() if node.resource_type == 'test' and node.unique_id not in ran -%}
            {%- set model = tested_model(node) -%}
            {%- if model in built -%}
                {%- do tests.append([
                    sql_string(invocation_id), sql_string(model), sql_string(node.name),
                    "'not run'", 'null', 'current_timestamp', 'null']) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if tests -%}
            {%- do statements.append(insert_lineage('lakehouse_test_results', tests)) -%}
        {%- endif -%}
        {%- set rows = [] -%}
        {%- for result in results if result.node.resource_type == 'model' -%}
            {%- do rows.append([
                sql_string(invocation_id), sql_string(result.node.name),
                sql_string(result.status), 'current_timestamp']) -%}
        {%- endfor -%}
        {%- if rows -%}
            {%- do statements.append(insert_lineage('lakehouse_model_builds', rows)) -%}
        {%- endif -%}
        {{ return(run_statements(statements)) }}
    {%- endif -%}
{% endmacro %}
