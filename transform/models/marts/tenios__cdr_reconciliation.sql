-- One row per cdr_counts row of every account: the API's count against the legs in the warehouse.
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
        counts.api_leg_count

)

select
    compared.*,
    loaded_leg_count - api_leg_count as difference,
    window_end_at <= {{ dbt.dateadd('hour', -1 * var('tenios_settle_hours'), tenios_utc_now()) }}
        as is_closed,
    case
        when loaded_leg_count = api_leg_count then 'match'
        when window_end_at > {{ dbt.dateadd('hour', -1 * var('tenios_settle_hours'), tenios_utc_now()) }}
            then 'settling'
        when loaded_leg_count < api_leg_count then 'missing_legs'
        else 'extra_legs'
    end as status
from compared
