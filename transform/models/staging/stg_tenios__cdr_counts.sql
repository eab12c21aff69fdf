-- One row per (account, day, time zone): the API's leg count for that day, typed.
with unioned as (

    {{ tenios_union_source('cdr_counts', [
        'cast(date as date) as count_date',
        'cast(timezone as ' ~ dbt.type_string() ~ ') as timezone',
        'cast(start_date_from as ' ~ dbt.type_timestamp() ~ ') as window_start_at',
        'cast(start_date_to as ' ~ dbt.type_timestamp() ~ ') as window_end_at',
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

)

select account, count_date, timezone, window_start_at, window_end_at, api_leg_count
from ranked
where copy_rank = 1
