-- One row per cdr_counts row of every account, with the legs built in its own counted
-- period (tenios__legs: each leg once) and whether that period is closed: the common
-- input of the reconciliation and the coverage, so that a failing reconciliation test
-- does not skip the coverage. The loaded rows themselves are tied to tenios__legs at
-- every build (assert_marts_tie_to_the_loaded_legs), so a leg lost from the loaded
-- table (a restore, a delete) still fails the build.
-- Incremental: a run counts again the periods that are new or counted anew, not yet
-- closed when last built, or hold a leg tenios__legs rebuilt since; the others are final.
{{ tenios_incremental_config(['account', 'count_date', 'timezone']) }}
{#- A counts row gone from the loaded tables (a restore, a delete) takes its row along,
    so that the coverage finds its day missing. #}
{{ config(post_hook=[
    "delete from {{ this }} where not exists (select 1 from {{ ref('stg_tenios__cdr_counts') }} as counts"
    ~ " where counts.account = {{ this }}.account and counts.count_date = {{ this }}.count_date"
    ~ " and counts.timezone = {{ this }}.timezone)"
]) }}
{%- set columns = [
    'account', 'count_date', 'timezone', 'window_start_at', 'window_end_at',
    'day_start_at', 'day_end_at', 'is_whole_day', 'api_leg_count',
] %}

with all_counts as (

    select * from {{ ref('stg_tenios__cdr_counts') }}

),

{% if tenios_is_incremental() -%}
-- Per account, the span of the legs rebuilt since this model last ran.
changed_legs as (

    select account, min(started_at) as earliest, max(started_at) as latest
    from {{ ref('tenios__legs') }}
    where built_at > {{ tenios_watermark() }}
    group by account

),

counts as (

    select all_counts.*
    from all_counts
    left join {{ this }} as built
        on built.account = all_counts.account
        and built.count_date = all_counts.count_date
        and built.timezone = all_counts.timezone
    left join changed_legs on changed_legs.account = all_counts.account
    where built.account is null
        or not built.is_closed
        or built.api_leg_count is distinct from all_counts.api_leg_count
        or built.window_start_at is distinct from all_counts.window_start_at
        or built.window_end_at is distinct from all_counts.window_end_at
        or built.is_whole_day is distinct from all_counts.is_whole_day
        or (
            all_counts.window_end_at > changed_legs.earliest
            and all_counts.window_start_at <= changed_legs.latest
        )

),

-- The legs from the earliest period counted again on, per account.
bounds as (

    select account, min(window_start_at) as earliest from counts group by account

),

built_legs as (

    select legs.account, legs.leg_id, legs.started_at
    from {{ ref('tenios__legs') }} as legs
    inner join bounds on bounds.account = legs.account
    where legs.started_at >= bounds.earliest

),
{%- else -%}
counts as (

    select * from all_counts

),

built_legs as (

    select account, leg_id, started_at from {{ ref('tenios__legs') }}

),
{%- endif %}

zones as (

    select distinct account, timezone from counts

),

-- Each leg on its local day in each zone its account was counted in, so that it meets
-- its counted period by an equality join (a range join alone compares every leg with
-- every period of its account).
legs as (

    select
        built_legs.account,
        built_legs.leg_id,
        built_legs.started_at,
        zones.timezone,
        cast({{ tenios_utc_to_zone('built_legs.started_at', 'zones.timezone') }} as date) as count_date
    from built_legs
    inner join zones on zones.account = built_legs.account

)

select
    {%- for column in columns %}
    counts.{{ column }},
    {%- endfor %}
    count(legs.leg_id) as loaded_leg_count,
    counts.window_end_at
        <= {{ dbt.dateadd('hour', -1 * var('tenios_settle_hours'), tenios_now()) }} as is_closed,
    {{ tenios_built_at() }} as built_at
from counts
left join legs
    on legs.account = counts.account
    and legs.timezone = counts.timezone
    and legs.count_date = counts.count_date
    and legs.started_at >= counts.window_start_at
    and legs.started_at < counts.window_end_at
group by
    {%- for column in columns %}
    counts.{{ column }}{% if not loop.last %},{% endif %}
    {%- endfor %}
