-- One row per (account, day, time zone): the API's leg count for the period of the day
-- the tap counted (the whole local day, or the part of it the extraction covered), typed,
-- with the local day's own bounds. Instants are zone-aware (macro tenios_instant).
with unioned as (

    {{ tenios_union_source('cdr_counts', [
        'cast(date as date) as count_date',
        'cast(timezone as ' ~ dbt.type_string() ~ ') as timezone',
        tenios_instant('start_date_from') ~ ' as window_start_at',
        tenios_instant('start_date_to') ~ ' as window_end_at',
        'cast(whole_day as ' ~ dbt.type_boolean() ~ ') as whole_day',
        'cast(total_items as ' ~ dbt.type_bigint() ~ ') as api_leg_count',
    ]) }}

),

ranked as (

    select
        unioned.*,
        -- A day counted again (the tap recounts recent days) keeps its latest, largest count.
        row_number() over (
            partition by account, count_date, timezone
            order by window_end_at desc, api_leg_count desc
        ) as copy_rank
    from unioned

),

bounded as (

    select
        ranked.*,
        {{ tenios_zone_to_instant('count_date', 'timezone') }} as day_start_at,
        {{ tenios_zone_to_instant(dbt.dateadd('day', 1, 'count_date'), 'timezone') }} as day_end_at
    from ranked
    where copy_rank = 1

)

select
    account,
    count_date,
    timezone,
    window_start_at,
    window_end_at,
    day_start_at,
    day_end_at,
    -- The tap says whether it counted the whole day; rows loaded before it said so
    -- (whole_day null) are whole when their period spans the local day.
    coalesce(
        whole_day,
        window_start_at <= day_start_at and window_end_at >= day_end_at
    ) as is_whole_day,
    api_leg_count
from bounded
