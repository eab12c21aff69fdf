-- One row per account and local day (in the zone the account's days are counted in now)
-- from its first day (var tenios_first_day or the account's first_day in
-- tenios_sources; else its first counted day) to its latest counted day: whether the
-- day was loaded. A warehouse restored from an old backup, or wiped, behind Meltano's
-- state (the next run loads only the lookback) has days without a cdr_counts row, or
-- closed days whose legs are gone: the test assert_every_day_is_loaded names them.
{%- set first_days = [] %}
{%- for entry in tenios_accounts() if entry['first_day'] %}
  {%- do first_days.append(entry) %}
{%- endfor %}

with counted as (

    select * from {{ ref('int_tenios__counted_periods') }}

),

-- The zone of each account's latest counted day: the tap's `timezone` now.
zones as (

    select account, timezone
    from (
        select
            account,
            timezone,
            row_number() over (
                partition by account order by window_end_at desc, count_date desc
            ) as recency
        from counted
    ) ranked
    where recency = 1

),

first_days as (

    {%- for entry in first_days %}
    select
        cast('{{ entry["account"] }}' as {{ dbt.type_string() }}) as account,
        cast('{{ entry["first_day"] }}' as date) as first_day
    {% if not loop.last %}union all{% endif %}
    {%- else %}
    select cast(null as {{ dbt.type_string() }}) as account, cast(null as date) as first_day
    where 1 = 0
    {%- endfor %}

),

bounds as (

    select
        zones.account,
        zones.timezone,
        coalesce(max(first_days.first_day), min(counted.count_date)) as first_day,
        max(counted.count_date) as last_day
    from zones
    inner join counted
        on counted.account = zones.account
        and counted.timezone = zones.timezone
    left join first_days on first_days.account = zones.account
    group by zones.account, zones.timezone

),

digits as (

    {% for digit in range(10) -%}
    select {{ digit }} as digit {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

-- 0 to 99,999: days enough for any account's history.
numbers as (

    select
        ones.digit + 10 * tens.digit + 100 * hundreds.digit + 1000 * thousands.digit
            + 10000 * tens_of_thousands.digit as day_number
    from digits as ones
    cross join digits as tens
    cross join digits as hundreds
    cross join digits as thousands
    cross join digits as tens_of_thousands

),

days as (

    select
        bounds.account,
        bounds.timezone,
        bounds.first_day,
        bounds.last_day,
        cast({{ dbt.dateadd('day', 'numbers.day_number', 'bounds.first_day') }} as date) as count_date
    from bounds
    inner join numbers
        on numbers.day_number <= {{ dbt.datediff('bounds.first_day', 'bounds.last_day', 'day') }}

)

select
    days.account,
    days.count_date,
    days.timezone,
    days.first_day,
    counted.count_date is not null as is_counted,
    counted.is_whole_day,
    counted.api_leg_count,
    counted.loaded_leg_count,
    coalesce(counted.is_closed, false) as is_closed,
    case
        when counted.count_date is null
            then 'missing: no cdr_counts row for this day (not loaded, or lost: a warehouse restored or wiped behind the state)'
        when counted.is_closed and counted.api_leg_count > 0 and counted.loaded_leg_count = 0
            then 'missing: no legs loaded for this closed day, though the API counted some'
        -- Counted while it was going on (a run's "today") and never again, though later
        -- days were: the next runs resumed after it, as from a state ahead of a restored
        -- backup. (A day an end_date ends within is the latest counted day.)
        when not counted.is_whole_day
            and counted.window_end_at < counted.day_end_at
            and days.count_date < days.last_day
            then 'missing: the rest of this day (counted only until a run ended, and by none of the later runs: lost behind the state)'
    end as problem
from days
left join counted
    on counted.account = days.account
    and counted.timezone = days.timezone
    and counted.count_date = days.count_date
