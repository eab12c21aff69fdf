-- One row per cdr_counts row of every account: the API's count against the legs in the
-- warehouse, over the period the tap counted (the whole local day, or the part of it the
-- extraction covered: the row says which, and why).
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
    is_closed,
    case
        when loaded_leg_count = api_leg_count then 'match'
        when not is_closed then 'settling'
        when loaded_leg_count < api_leg_count then 'missing_legs'
        else 'extra_legs'
    end as status
from {{ ref('int_tenios__counted_periods') }}
