-- Every user's features as a photo owner at the night's as_of (the users signed up by then),
-- for serving: the training set's own definition (macros/features.sql,
-- owner_features_before) evaluated for a photo posted at that instant, so the model is
-- served exactly what it trained on. Rebuilt whole each night: every feature moves with the
-- instant (account age, the 30-day window). `lakehouse materialize` copies it into the
-- online store after the gate passed the night.

with

serving_instant as (
    select {{ serving_as_of() }} as instant
),

spine as (
    -- the users who had signed up by the instant (a replay at an earlier as_of serves no
    -- account from its future)
    select
        app_users.user_id as spine_key,
        app_users.user_id as owner_user_id,
        serving_instant.instant as spine_at
    from {{ ref('stg_app__users') }} as app_users
    cross join serving_instant
    where app_users.signup_at <= serving_instant.instant
),

{{ owner_features_before(
    'spine', ref('stg_app__photos'),
    'cast(cast(' ~ serving_as_of() ~ ' as date) as ' ~ timestamp_tz() ~ ')'
) }},

final as (
    select
        owner_features.owner_user_id,
        owner_features.spine_at as as_of,
        {{ owner_feature_columns('owner_features') }}
    from owner_features
)

select * from final
