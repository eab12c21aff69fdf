-- One row per cdr_counts row of every account: the API's count against the legs in the
-- warehouse, over the period the tap counted (the whole local day, or the part of it the
-- extraction covered: the row says which, and why).
{%- set closed_before = dbt.dateadd('hour', -1 * var('tenios_settle_hours'), tenios_now()) %}

with counts as (

    select * from {{ ref('stg_tenios__cdr_counts') }}

),

-- The loaded rows themselves, not the incremental tenios__legs: a leg lost from the
-- loaded table (a restore, a delete) shows at the next build.
legs as (

    select account, leg_id, started_at from {{ ref('stg_tenios__cdr_legs') }}

),

compared as (

    select
        counts.account,
        counts.count_date,
        counts.timezone,
        counts.window_start_at,
        counts.window_end_at,
        counts.day_start_at,
        counts.day_end_at,
        counts.is_whole_day,
        counts.api_leg_count,
        count(distinct legs.leg_id) as loaded_leg_count
    from counts
    left join legs
        on legs.account = counts.account
        and legs.started_at >= counts.window_start_at
        and legs.started_at < counts.window_end_at
    group by
        counts.account,
        counts.count_date,
        counts.timezone,
        counts.window_start_at,
        counts.window_end_at,
        counts.day_start_at,
        counts.day_end_at,
        counts.is_whole_day,
        counts.api_leg_count

)

select
    account,
    count_date,
    timezone,
    window_start_at,
    window_end_at,
    is_whole_day,
    case
        when is_whole_day then 'whole day'
        when window_start_at > day_start_at and window_end_at < day_end_at
            then 'partial: the extraction begins at start_date and ends within this local day'
        when window_start_at > day_start_at
            then 'partial: the extraction begins at start_date within this local day'
        when day_end_at > {{ tenios_now() }}
            then 'partial: the day was not over at the run''s end; the next run counts it whole'
        else 'partial: the extraction ends at end_date within this local day (or no run has counted it since it ended)'
    end as counted_period,
    api_leg_count,
    loaded_leg_count,
    loaded_leg_count - api_leg_count as difference,
    window_end_at <= {{ closed_before }} as is_closed,
    case
        when loaded_leg_count = api_leg_count then 'match'
        when window_end_at > {{ closed_before }} then 'settling'
        when loaded_leg_count < api_leg_count then 'missing_legs'
        else 'extra_legs'
    end as status
from compared
