-- One row per (day, time zone): the API's leg count for that day, typed.
with source as (

    select * from {{ source('tenios', 'cdr_counts') }}

),

ranked as (

    select
        source.*,
        -- A day counted again (the tap recounts recent days) keeps its latest, largest count.
        row_number() over (
            partition by date, timezone
            order by start_date_to desc, total_items desc
        ) as copy_rank
    from source

)

select
    cast(date as date) as count_date,
    cast(timezone as {{ dbt.type_string() }}) as timezone,
    cast(start_date_from as {{ dbt.type_timestamp() }}) as window_start_at,
    cast(start_date_to as {{ dbt.type_timestamp() }}) as window_end_at,
    cast(total_items as {{ dbt.type_bigint() }}) as api_leg_count
from ranked
where copy_rank = 1
