{#- Small helpers shared by feature models. -#}

{% macro embedding_dim() -%}
    {#- The embedding's size, as its bronze source declares it (data_type float[N] of
        photo_embeddings.embedding, models/staging/ml/_ml__sources.yml): stated once. The
        graph is known only when dbt executes; a parse renders a placeholder. -#}
    {%- if not execute -%}{{ return(1) }}{%- endif -%}
    {%- set declared = graph.sources.values() | selectattr('identifier', 'equalto', 'photo_embeddings') | list -%}
    {%- set data_type = declared[0].columns['embedding'].data_type if declared else '' -%}
    {%- if not data_type.startswith('float[') -%}
        {{ exceptions.raise_compiler_error(
            "the photo_embeddings source must declare its embedding column as float[N] "
            ~ "(models/staging/ml/_ml__sources.yml), found '" ~ data_type ~ "'"
        ) }}
    {%- endif -%}
    {{ return(data_type[6:-1] | int) }}
{%- endmacro %}

{% macro deterministic_bucket(expression, buckets=100) -%}
    {#- A stable bucket in [0, buckets) from the md5 of a value: same id, same split, on any
        engine and any DuckDB release (unlike hash()). -#}
    {{ return(adapter.dispatch('deterministic_bucket', 'lakehouse')(expression, buckets)) }}
{%- endmacro %}

{% macro default__deterministic_bucket(expression, buckets) -%}
    mod(cast(conv(substr({{ dbt.hash(expression) }}, 1, 8), 16, 10) as bigint), {{ buckets }})
{%- endmacro %}

{% macro duckdb__deterministic_bucket(expression, buckets) -%}
    (cast(('0x' || substr(md5(cast({{ expression }} as varchar)), 1, 8)) as bigint) % {{ buckets }})
{%- endmacro %}


{% macro serving_as_of() -%}
    {#- The instant serving features are evaluated at: the night's as_of, the job's clock
        (`lakehouse build` hands it over as LAKEHOUSE_AS_OF; on Spark in the pins' record), else
        now, for an analyst's plain `dbt build`. A point in time for freshness, never a
        cursor: what is new is decided by identities (macros/incremental.sql). -#}
    {{ return(adapter.dispatch('serving_as_of', 'lakehouse')()) }}
{%- endmacro %}

{% macro duckdb__serving_as_of() -%}
    coalesce(getvariable('lakehouse_as_of'), current_timestamp)
{%- endmacro %}

{% macro default__serving_as_of() -%}
    {#- Spark: the as_of of the build's record (spark_bronze_pins), else now -#}
    {%- set as_of = spark_bronze_pins().get('') -%}
    {%- if as_of -%}{{ timestamp_literal(as_of) }}{%- else -%}current_timestamp(){%- endif -%}
{%- endmacro %}


{% macro engagement_received_types() -%}
    {#- The events that count as engagement an owner received through a photo (likes and
        follows): int_owner_engagement_daily's days and the instant's own day alike -#}
    ('like', 'follow')
{%- endmacro %}


{% macro owner_features_before(spine, owner_photos, same_day_from) -%}
    {#- The photo owner's features as they were strictly before an instant: CTEs ending in
        `owner_features`, one row per row of `spine` (spine_key, owner_user_id, spine_at).
        `owner_photos` holds every photo of the spine's owners (photo_id, owner_user_id,
        posted_at). The one definition of these features: the training set evaluates it for
        each photo at its posting (int_owner_features_as_of_posting) and serving for every
        owner at the night's as_of (online_owner_features), so a model is served what it
        trained on. features_as_of is the newest event time the features used.
        The engagement received before an instant is the owner's daily totals of the days
        before the instant's day (int_owner_engagement_daily) plus the instant's own day up
        to it, counted from its events: `same_day_from`, a constant no later than the start
        of any spine instant's day, lets DuckDB skip the row groups of older events. -#}
users as (
    select
        user_id,
        signup_at,
        is_verified,
        country_code
    from {{ ref('stg_app__users') }}
),

spine_days as (
    select
        spine_key,
        owner_user_id,
        spine_at,
        cast(spine_at as date) as spine_day
    from {{ spine }}
),

owner_days as (
    -- one row per (owner, day) with running totals up to and including that day
    select
        owner_user_id,
        engagement_date,
        -- counts, as the events' own count() would give them (a sum of them widens)
        cast(sum(likes_received) over running as {{ dbt.type_bigint() }}) as likes_received_total,
        cast(sum(follows_received) over running as {{ dbt.type_bigint() }}) as followers_total,
        max(last_received_at) over running as received_as_of
    from {{ ref('int_owner_engagement_daily') }}
    where owner_user_id in (select owner_user_id from spine_days)
    window running as (
        partition by owner_user_id order by engagement_date
        rows between unbounded preceding and current row
    )
),

received_days_before as (
    -- the days strictly before the instant's day
    select
        l.spine_key,
        r.received_as_of,
        r.likes_received_total,
        r.followers_total
    from {{ point_in_time_join('spine_days', 'owner_days', 'owner_user_id', 'spine_day', 'engagement_date') }}
),

same_day_received as (
    -- likes and follows received on an instant's own day, by owner and day
    select
        photos.owner_user_id,
        cast(events.occurred_at as date) as spine_day,
        events.occurred_at,
        events.event_type
    from {{ ref('stg_app__events') }} as events
    inner join {{ owner_photos }} as photos on events.photo_id = photos.photo_id
    where
        events.event_type in {{ engagement_received_types() }}
        and events.occurred_at >= {{ same_day_from }}
        and exists (
            select 1 from spine_days
            where
                spine_days.owner_user_id = photos.owner_user_id
                and spine_days.spine_day = cast(events.occurred_at as date)
        )
),

same_day_timeline as (
    -- one row per (owner, day, instant) with the day's totals up to and including it
    select distinct
        owner_user_id,
        spine_day,
        occurred_at,
        count(case when event_type = 'like' then 1 end) over running as likes_received_total,
        count(case when event_type = 'follow' then 1 end) over running as followers_total
    from same_day_received
    window running as (
        partition by owner_user_id, spine_day order by occurred_at
        range between unbounded preceding and current row
    )
),

received_same_day_before as (
    select
        l.spine_key,
        r.occurred_at as received_as_of,
        r.likes_received_total,
        r.followers_total
    from {{ point_in_time_join('spine_days', 'same_day_timeline', ['owner_user_id', 'spine_day'], 'spine_at', 'occurred_at') }}
),

received_before as (
    select
        spine_days.spine_key,
        greatest(days.received_as_of, same_day.received_as_of) as received_as_of,
        coalesce(days.likes_received_total, 0)
        + coalesce(same_day.likes_received_total, 0) as owner_likes_received,
        coalesce(days.followers_total, 0)
        + coalesce(same_day.followers_total, 0) as owner_followers
    from spine_days
    left join received_days_before as days on spine_days.spine_key = days.spine_key
    left join received_same_day_before as same_day
        on spine_days.spine_key = same_day.spine_key
),

posting_timeline as (
    -- one row per (owner, posting instant) with the photos posted up to and including it
    select distinct
        owner_user_id,
        posted_at,
        count(*) over (
            partition by owner_user_id order by posted_at
            range between unbounded preceding and current row
        ) as photos_total
    from {{ owner_photos }}
),

posted_before as (
    select
        l.spine_key,
        coalesce(r.photos_total, 0) as owner_prior_photos
    from {{ point_in_time_join(spine, 'posting_timeline', 'owner_user_id', 'spine_at', 'posted_at') }}
),

recent_activity as (
    -- the owner's own activity in the 30 full days before the instant's day
    select
        spine.spine_key,
        coalesce(sum(activity.events), 0) as owner_events_30d,
        max(activity.last_event_at) as activity_as_of
    from {{ spine }} as spine
    left join {{ ref('int_user_activity_daily') }} as activity
        on
            spine.owner_user_id = activity.user_id
            and activity.activity_date < cast(spine.spine_at as date)
            and activity.activity_date
            >= cast({{ dbt.dateadd('day', -30, 'spine.spine_at') }} as date)
    group by spine.spine_key
),

owner_features as (
    select
        spine.spine_key,
        spine.owner_user_id,
        spine.spine_at,
        {{ dbt.datediff('users.signup_at', 'spine.spine_at', 'day') }}
            as owner_account_age_days,
        users.is_verified as owner_is_verified,
        users.country_code as owner_country_code,
        posted_before.owner_prior_photos,
        received_before.owner_likes_received,
        received_before.owner_followers,
        recent_activity.owner_events_30d,
        greatest(received_before.received_as_of, recent_activity.activity_as_of)
            as features_as_of
    from {{ spine }} as spine
    left join users on spine.owner_user_id = users.user_id
    left join posted_before on spine.spine_key = posted_before.spine_key
    left join received_before on spine.spine_key = received_before.spine_key
    left join recent_activity on spine.spine_key = recent_activity.spine_key
)
{%- endmacro %}


{% macro owner_feature_columns(owner_features) -%}
    {#- The owner's features as a model reads them (the training set's and serving's types) -#}
    cast({{ owner_features }}.owner_account_age_days as integer) as owner_account_age_days,
    {{ owner_features }}.owner_is_verified,
    {{ owner_features }}.owner_country_code,
    cast({{ owner_features }}.owner_prior_photos as integer) as owner_prior_photos,
    cast({{ owner_features }}.owner_likes_received as integer) as owner_likes_received,
    cast({{ owner_features }}.owner_followers as integer) as owner_followers,
    cast({{ owner_features }}.owner_events_30d as integer) as owner_events_30d,
    {{ owner_features }}.features_as_of
{%- endmacro %}


{% macro photo_feature_columns(photos, embeddings) -%}
    {#- A photo's features known at its posting, as a model reads them (the training set's
        and serving's types) -#}
    {{ photos }}.caption_lang,
    cast({{ photos }}.caption_length as integer) as caption_length,
    cast({{ photos }}.hashtag_count as integer) as hashtag_count,
    cast({{ photos }}.width as integer) as width,
    cast({{ photos }}.height as integer) as height,
    cast({{ photos }}.aspect_ratio as float) as aspect_ratio,
    {{ embeddings }}.embedding
{%- endmacro %}
