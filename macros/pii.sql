{#- Personal data leaves staging only as HMAC-SHA256 keyed by LAKEHOUSE_PII_SALT. The key never
    appears in SQL: lakehouse.warehouse.dbt_plugin (profiles.yml) sets the HMAC pads as DuckDB
    session variables, and the SQL below only names them, so compiled SQL, dbt's artifacts
    and logs hold no key (docs/decisions/0007-security-model.md). -#}

{% macro hash_pii(column) -%}
    {{ return(adapter.dispatch('hash_pii', 'lakehouse')(column)) }}
{%- endmacro %}

{% macro default__hash_pii(column) -%}
    {{ exceptions.raise_compiler_error(
        "hash_pii has no implementation for " ~ target.type ~ ": the PII key must reach the "
        ~ "engine outside SQL text (see lakehouse.warehouse.dbt_plugin for DuckDB)"
    ) }}
{%- endmacro %}

{% macro duckdb__hash_pii(column) -%}
    case when {{ column }} is null then null
    else sha256(
        getvariable('lakehouse_pii_outer')
        || unhex(sha256(getvariable('lakehouse_pii_inner') || encode(lower(trim({{ column }})))))
    ) end
{%- endmacro %}

{% macro spark__hash_pii(column) -%}
    {#- HMAC-SHA256 by commons-codec (on Spark's classpath), keyed by the Spark conf the
        profile sets from LAKEHOUSE_PII_SALT: `${spark.lakehouse.pii_key}` is substituted by
        Spark's parser, so the key is in no SQL text dbt writes. Same hex as DuckDB's. -#}
    {%- if execute and not _scalar("select length('${spark.lakehouse.pii_key}') > 0") -%}
        {{ exceptions.raise_compiler_error(
            "LAKEHOUSE_PII_SALT is not set: personal data is hashed with it (HMAC-SHA256). "
            ~ "Export it from your secret store before building on Spark (`lakehouse build "
            ~ "--engine spark` with a warehouse under data/demo uses the demo's public key)."
        ) }}
    {%- endif -%}
    case when {{ column }} is null then null
    else reflect(
        'org.apache.commons.codec.digest.HmacUtils', 'hmacSha256Hex',
        '${spark.lakehouse.pii_key}', lower(trim({{ column }}))
    ) end
{%- endmacro %}
