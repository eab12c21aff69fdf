-- One row per cdr_counts row of every account, with the legs loaded in its own counted
-- period and whether that period is closed: the common input of the reconciliation and
-- the coverage, so that a failing reconciliation test does not skip the coverage.
-- The loaded rows themselves are counted, not the incremental tenios__legs: a leg lost
-- from the loaded table (a restore, a delete) shows at the next build.
{{ config(materialized='table') }}
{%- set columns = [
    'account', 'count_date', 'timezone', 'window_start_at', 'window_end_at',
    'day_start_at', 'day_end_at', 'is_whole_day', 'api_leg_count',
] %}

with counts as (

    select * from {{ ref('stg_tenios__cdr_counts') }}

),

zones as (

    select distinct account, timezone from counts

),

-- Each loaded leg on its local day in each zone its account was counted in, so that it
-- meets its counted period by an equality join (a range join alone compares every leg
-- with every period of its account).
legs as (

    select
        legs.account,
        legs.leg_id,
        legs.started_at,
        zones.timezone,
        cast({{ tenios_utc_to_zone('legs.started_at', 'zones.timezone') }} as date) as count_date
    from {{ ref('stg_tenios__cdr_legs') }} as legs
    inner join zones on zones.account = legs.account

)

select
    {%- for column in columns %}
    counts.{{ column }},
    {%- endfor %}
    count(distinct legs.leg_id) as loaded_leg_count,
    counts.window_end_at
        <= {{ dbt.dateadd('hour', -1 * var('tenios_settle_hours'), tenios_now()) }} as is_closed
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
