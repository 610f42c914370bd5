{#- Reading the bronze Delta tables: where they are, which version, and a clear error
    when they are not there. -#}

{% macro lake_root() -%}
    {#- --vars '{lake_root: ...}', else $LAKEHOUSE_LAKE, else the demo's lake; the same rule
        as the source template in dbt_project.yml -#}
    {{ var('lake_root', env_var('LAKEHOUSE_LAKE', 'data/demo/lake')).rstrip('/') }}
{%- endmacro %}


{% macro bronze_path(table) -%}
    {{ lake_root() }}/bronze/{{ table }}
{%- endmacro %}


{% macro bronze_tables() -%}
    {#- The bronze tables this project reads: the identifiers of its sources (every source is
        a bronze table; dbt_project.yml gives them one location template). -#}
    {%- set tables = [] -%}
    {%- for source in graph.sources.values() | sort(attribute='identifier') -%}
        {%- do tables.append(source.identifier) -%}
    {%- endfor -%}
    {{ return(tables) }}
{%- endmacro %}


{% macro load_delta_extension() %}
    {{ return(adapter.dispatch('load_delta_extension', 'lakehouse')()) }}
{% endmacro %}

{% macro duckdb__load_delta_extension() %}
    {%- if execute -%}
        {%- set found = run_query(
            "select count(*) from duckdb_extensions() where extension_name = 'delta' and installed"
        ).columns[0].values()[0] -%}
        {%- if found == 0 -%}
            {{ exceptions.raise_compiler_error(
                "DuckDB's delta extension is not installed in the extension directory of this "
                ~ "profile. Run `make setup` (or `lakehouse build`), which installs it from the "
                ~ "duckdb-extension-delta wheel; nothing is downloaded."
            ) }}
        {%- endif -%}
    {%- endif -%}
    load delta
{% endmacro %}

{% macro spark__load_delta_extension() %}
    {#- Spark reads bronze through the views assert_bronze_exists registers -#}
    select 1
{% endmacro %}


{% macro assert_bronze_exists() %}
    {%- if execute -%}
        {%- set tables = bronze_tables() -%}
        {%- set pins = var('bronze_versions', {}) -%}
        {%- set unpinned = tables | reject('in', pins) | list -%}
        {%- if pins and unpinned -%}
            {{ exceptions.raise_compiler_error(
                "bronze_versions pins " ~ (pins.keys() | list | join(', ')) ~ " but not "
                ~ (unpinned | join(', ')) ~ ": pin every bronze table or none. "
                ~ "`lakehouse build --bronze-version TABLE=VERSION` pins the others at "
                ~ "their current version for you."
            ) }}
        {%- endif -%}
    {%- endif -%}
    {{ return(adapter.dispatch('assert_bronze_exists', 'lakehouse')()) }}
{% endmacro %}

{% macro duckdb__assert_bronze_exists() %}
    {%- if execute -%}
        {%- for table in bronze_tables() -%}
            {%- set commits = run_query(
                "select count(*) from glob('" ~ bronze_path(table) ~ "/_delta_log/*.json')"
            ).columns[0].values()[0] -%}
            {%- if commits == 0 -%}
                {{ exceptions.raise_compiler_error(
                    "No bronze Delta table at " ~ bronze_path(table) ~ ". Ingest first: "
                    ~ "`lakehouse ingest <landing> --lake " ~ lake_root() ~ "` (or `make demo`"
                    ~ " for sample data), or point dbt at your lake with LAKEHOUSE_LAKE."
                ) }}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    select 1
{% endmacro %}

{% macro spark__assert_bronze_exists() %}
    {#- Spark has no Delta reader here (its connector's jars come from Maven): each bronze
        source becomes a view over exactly the Parquet files of its pinned Delta version,
        which deltalake lists (`bronze_files`, a glob per table, passed by `lakehouse build
        --engine spark` or `lakehouse dbt-vars --engine spark`). Commands that build nothing
        from bronze (test, source freshness, docs) keep the views of the last build.
        docs/decisions/0011-spark.md -#}
    {%- if execute -%}
        {%- set files = var('bronze_files', {}) -%}
        {%- if not files and flags.WHICH not in ['test', 'source', 'docs', 'list', 'parse', 'compile'] -%}
            {{ exceptions.raise_compiler_error(
                "The spark target reads bronze at pinned Delta versions, from the files "
                ~ "deltalake lists for them, and no `bronze_files` var was given. Run "
                ~ "`lakehouse build --engine spark`, or pass them yourself: "
                ~ "dbt " ~ flags.WHICH ~ " --target spark --vars \"$(lakehouse dbt-vars --engine spark)\""
            ) }}
        {%- endif -%}
        {%- for source in graph.sources.values() if files -%}
            {%- if source.identifier not in files -%}
                {{ exceptions.raise_compiler_error(
                    "bronze_files has no files for bronze table " ~ source.identifier
                    ~ ": give every table (lakehouse dbt-vars --engine spark does)"
                ) }}
            {%- endif -%}
            {%- set relation = api.Relation.create(schema=source.schema, identifier=source.identifier) -%}
            {%- do run_query("create schema if not exists " ~ source.schema) -%}
            {%- do run_query(
                "create or replace view " ~ relation ~ " as select * from parquet.`"
                ~ files[source.identifier] ~ "`"
            ) -%}
        {%- endfor -%}
    {%- endif -%}
    select 1
{% endmacro %}


{% macro release_spark_tables() %}
    {#- After `lakehouse build --engine spark` into this warehouse file, its tables are views
        over Spark's Parquet, marked with a comment (lakehouse.warehouse.spark.VIEW_COMMENT).
        A DuckDB build writes tables of those names, so those views give way first. -#}
    {{ return(adapter.dispatch('release_spark_tables', 'lakehouse')()) }}
{% endmacro %}

{% macro duckdb__release_spark_tables() %}
    {%- if execute and flags.WHICH in ['build', 'run', 'seed', 'retry', 'clone'] -%}
        {%- set views = run_query(
            "select view_name from duckdb_views() where schema_name = '" ~ target.schema
            ~ "' and comment = 'lakehouse: a table of a Spark build'"
        ).columns[0].values() -%}
        {%- for view in views -%}
            {#- through the adapter, so dbt's relation cache forgets them too -#}
            {%- do adapter.drop_relation(api.Relation.create(
                database=target.database, schema=target.schema, identifier=view, type='view'
            )) -%}
        {%- endfor -%}
    {%- endif -%}
    select 1
{% endmacro %}

{% macro spark__release_spark_tables() %}
    select 1
{% endmacro %}


{% macro run_statements(statements) %}
    {#- Run each statement on its own (Spark runs one per call), then nothing more -#}
    {%- for statement in statements -%}
        {%- do run_query(statement) -%}
    {%- endfor -%}
    select 1
{% endmacro %}


{% macro record_bronze_reads() %}
    {#- Which Delta version of each bronze table this invocation read, for the exporter's
        lineage manifest: the pinned version, or null when the run read the latest one
        (a plain `dbt build`; `lakehouse build` always pins). A table's version is learned
        in one place, by deltalake in Python, never re-derived here from the log's files. -#}
    {%- if execute -%}
        {%- set pins = var('bronze_versions', {}) -%}
        {%- set statements = [
            "create table if not exists " ~ target.schema ~ ".lakehouse_bronze_reads ("
            ~ "invocation_id " ~ dbt.type_string() ~ ", table_name " ~ dbt.type_string()
            ~ ", delta_version bigint, pinned boolean, recorded_at " ~ timestamp_tz() ~ ")"
        ] -%}
        {%- set rows = [] -%}
        {%- for table in bronze_tables() -%}
            {%- set pinned = pins.get(table) -%}
            {%- do rows.append(
                "('" ~ invocation_id ~ "', '" ~ table ~ "', "
                ~ ("cast(" ~ pinned ~ " as bigint)" if pinned is not none else "cast(null as bigint)")
                ~ ", " ~ ('true' if pinned is not none else 'false') ~ ", current_timestamp)"
            ) -%}
        {%- endfor -%}
        {%- do statements.append(
            "insert into " ~ target.schema ~ ".lakehouse_bronze_reads values " ~ rows | join(", ")
        ) -%}
        {{ return(run_statements(statements)) }}
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
            "create table if not exists " ~ target.schema ~ ".lakehouse_test_results ("
            ~ "invocation_id " ~ dbt.type_string() ~ ", model " ~ dbt.type_string()
            ~ ", test_name " ~ dbt.type_string() ~ ", status " ~ dbt.type_string()
            ~ ", failures bigint, recorded_at " ~ timestamp_tz() ~ ")",
            "create table if not exists " ~ target.schema ~ ".lakehouse_model_builds ("
            ~ "invocation_id " ~ dbt.type_string() ~ ", model " ~ dbt.type_string()
            ~ ", status " ~ dbt.type_string() ~ ", recorded_at " ~ timestamp_tz() ~ ")"
        ] -%}
        {%- set tests = [] -%}
        {%- set ran = [] -%}
        {%- for result in results if result.node.resource_type == 'test' -%}
            {%- set model = tested_model(result.node) -%}
            {%- if model -%}
                {%- do ran.append(result.node.unique_id) -%}
                {%- do tests.append(
                    "('" ~ invocation_id ~ "', '" ~ model ~ "', '"
                    ~ result.node.name | replace("'", "''") ~ "', '" ~ result.status ~ "', "
                    ~ (result.failures if result.failures is number else 'null')
                    ~ ", current_timestamp)"
                ) -%}
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
                {%- do tests.append(
                    "('" ~ invocation_id ~ "', '" ~ model ~ "', '" ~ node.name | replace("'", "''")
                    ~ "', 'not run', null, current_timestamp)"
                ) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if tests -%}
            {%- do statements.append(
                "insert into " ~ target.schema ~ ".lakehouse_test_results values " ~ tests | join(", ")
            ) -%}
        {%- endif -%}
        {%- set rows = [] -%}
        {%- for result in results if result.node.resource_type == 'model' -%}
            {%- do rows.append(
                "('" ~ invocation_id ~ "', '" ~ result.node.name ~ "', '" ~ result.status
                ~ "', current_timestamp)"
            ) -%}
        {%- endfor -%}
        {%- if rows -%}
            {%- do statements.append(
                "insert into " ~ target.schema ~ ".lakehouse_model_builds values " ~ rows | join(", ")
            ) -%}
        {%- endif -%}
        {{ return(run_statements(statements)) }}
    {%- endif -%}
{% endmacro %}


{% macro configure_object_store() %}
    {{ return(adapter.dispatch('configure_object_store', 'lakehouse')()) }}
{% endmacro %}

{% macro spark__configure_object_store() %}
    {%- if lake_root().startswith('s3://') -%}
        {{ exceptions.raise_compiler_error(
            "The spark target reads a local lake here: Spark's S3 connector (hadoop-aws) "
            ~ "comes from Maven, which this machine cannot reach. On a cluster that has it, "
            ~ "read the lake as s3a:// (docs/decisions/0011-spark.md)."
        ) }}
    {%- endif -%}
    select 1
{% endmacro %}

{% macro duckdb__configure_object_store() %}
    {#- A lake on S3-compatible storage: httpfs + aws, and a secret whose keys come from the
        AWS_* environment at run time (credential chain), so none is written into SQL, logs
        or run results. Same statements as lakehouse.warehouse.object_store_sql. -#}
    {%- set lake = lake_root() -%}
    {%- if lake.startswith('s3://') -%}
        {%- set endpoint = env_var('AWS_ENDPOINT_URL', '') -%}
        load httpfs;
        load aws;
        create or replace secret lakehouse_s3 (
            type s3, provider credential_chain, chain 'env',
            region '{{ env_var("AWS_REGION", "us-east-1") }}'
            {%- if endpoint %},
            endpoint '{{ endpoint.split("://")[-1].rstrip("/") }}',
            url_style 'path',
            use_ssl {{ 'false' if endpoint.startswith('http://') else 'true' }}
            {%- endif %}
        )
    {%- else -%}
        select 1
    {%- endif -%}
{% endmacro %}


{% macro record_run_start() %}
    {#- Every invocation says it started, with its build number: one more than any before it
        in this warehouse (models stamp their rows with it, macros/incremental.sql);
        record_bronze_reads says it finished. The exporter refuses a warehouse whose latest
        invocation never finished (killed mid-build: some models rebuilt, others not). -#}
    {%- if execute -%}
        {%- set runs = target.schema ~ ".lakehouse_dbt_runs" -%}
        {%- set statements = [
            "create table if not exists " ~ runs ~ " ("
            ~ "invocation_id " ~ dbt.type_string() ~ ", started_at " ~ timestamp_tz()
            ~ ", build_seq bigint)"
        ] -%}
        {%- if target.type == 'duckdb' -%}
            {#- a warehouse from before build numbers -#}
            {%- do statements.append("alter table " ~ runs ~ " add column if not exists build_seq bigint") -%}
        {%- endif -%}
        {%- do statements.append(
            "insert into " ~ runs ~ " (invocation_id, started_at, build_seq) select '"
            ~ invocation_id ~ "', current_timestamp, coalesce(max(build_seq), 0) + 1 from " ~ runs
        ) -%}
        {{ return(run_statements(statements)) }}
    {%- endif -%}
{% endmacro %}
