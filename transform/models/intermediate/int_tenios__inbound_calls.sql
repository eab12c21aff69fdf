-- Inbound calls with whether each started within its service number's opening hours
-- (in the schedule's own zone, the rows valid on that day; a number without opening
-- hours that day is always open; a holiday is closed), whether its caller called the
-- number before that local day, and the local interval (tenios_interval_minutes) it
-- started in. A view: the KPI marts' common input, so a change of opening hours
-- applies without rebuilding tenios__calls.
{{ config(materialized='view') }}
{%- set minutes = var('tenios_interval_minutes') %}
{%- if minutes not in [15, 30, 60] %}
  {{ exceptions.raise_compiler_error("tenios_interval_minutes must be 15, 30 or 60, not " ~ minutes) }}
{%- endif %}

with calls as (

    select * from {{ ref('tenios__calls') }}
    where call_kind = 'inbound'

),

{%- set hours_relation = ref(var('tenios_opening_hours')) %}
{#- Opening hours kept in a model of one's own may predate validity: always valid. #}
{%- set no_validity = tenios_missing_columns(hours_relation, ['valid_from', 'valid_to']) %}
-- The var tenios_opening_hours names the seed (or model) of opening hours; a blank
-- account means every account, times become minutes after local midnight.
hours as (

    select
        nullif(trim(cast(account as {{ dbt.type_string() }})), '') as account,
        cast(service_number as {{ dbt.type_string() }}) as service_number,
        cast(weekday as {{ dbt.type_int() }}) as weekday,
        cast(substr(opens_at, 1, 2) as {{ dbt.type_int() }}) * 60
            + cast(substr(opens_at, 4, 2) as {{ dbt.type_int() }}) as opens_minute,
        cast(substr(closes_at, 1, 2) as {{ dbt.type_int() }}) * 60
            + cast(substr(closes_at, 4, 2) as {{ dbt.type_int() }}) as closes_minute,
        cast(timezone as {{ dbt.type_string() }}) as timezone,
        {%- for column in ['valid_from', 'valid_to'] %}
        {{ 'cast(null as date)' if column in no_validity else 'cast(' ~ column ~ ' as date)' }}
            as {{ column }}{% if not loop.last %},{% endif %}
        {%- endfor %}
    from {{ hours_relation }}

),

-- Days closed all day (var tenios_holidays); blank account or number: all of them.
holidays as (

    select distinct
        nullif(trim(cast(account as {{ dbt.type_string() }})), '') as account,
        nullif(trim(cast(service_number as {{ dbt.type_string() }})), '') as service_number,
        cast(holiday_date as date) as holiday_date
    from {{ ref(var('tenios_holidays')) }}

),

zones as (

    select distinct account, service_number, timezone from hours

),

zoned as (

    select
        calls.*,
        zones.timezone as opening_hours_timezone,
        {{ tenios_utc_to_zone('calls.started_at', 'zones.timezone') }} as started_at_schedule,
        -- The caller called this number earlier the same local day (null: no caller
        -- number, e.g. removed by a stream map, or anonymous).
        case
            when calls.caller_number is not null and calls.caller_number <> 'anonymous'
                then row_number() over (
                    partition by calls.account, calls.service_number, calls.caller_number,
                        calls.start_date_local
                    order by calls.started_at, calls.call_id) > 1
        end as is_repeat_caller
    from calls
    left join zones
        on zones.service_number = calls.service_number
        and coalesce(zones.account, calls.account) = calls.account

),

-- Calls whose number has opening hours valid on their day (in the schedule's zone), and
-- whether they started within one of its periods (a join, not EXISTS in the select
-- list, which Snowflake cannot run).
scheduled_calls as (

    select
        zoned.account,
        zoned.call_id,
        max(case
            when hours.weekday = {{ tenios_iso_weekday('zoned.started_at_schedule') }}
                and {{ tenios_minute_of_day('zoned.started_at_schedule') }} >= hours.opens_minute
                and {{ tenios_minute_of_day('zoned.started_at_schedule') }} < hours.closes_minute
                then 1 else 0
        end) as is_open
    from zoned
    inner join hours
        on hours.service_number = zoned.service_number
        and coalesce(hours.account, zoned.account) = zoned.account
        and (hours.valid_from is null
             or hours.valid_from <= cast(zoned.started_at_schedule as date))
        and (hours.valid_to is null
             or hours.valid_to >= cast(zoned.started_at_schedule as date))
    group by zoned.account, zoned.call_id

),

holiday_calls as (

    select distinct zoned.account, zoned.call_id
    from zoned
    inner join holidays
        on coalesce(holidays.account, zoned.account) = zoned.account
        and coalesce(holidays.service_number, zoned.service_number) = zoned.service_number
        and holidays.holiday_date
            = coalesce(cast(zoned.started_at_schedule as date), zoned.start_date_local)

)

select
    zoned.account,
    zoned.call_id,
    zoned.service_number,
    zoned.started_at,
    zoned.start_date_local,
    zoned.start_hour_local,
    zoned.start_weekday_local,
    {{ dbt.dateadd(
        'minute',
        'cast(floor(' ~ tenios_minute_of_day('zoned.started_at_local') ~ ' / ' ~ minutes ~ '.0) as '
            ~ dbt.type_int() ~ ') * ' ~ minutes,
        'cast(zoned.start_date_local as ' ~ dbt.type_timestamp() ~ ')',
    ) }} as interval_start_local,
    zoned.outcome,
    zoned.is_answered,
    zoned.is_answered_by_person,
    zoned.is_ner_effective,
    zoned.is_ner_effective_strict,
    zoned.is_caller_hangup_while_ringing,
    zoned.is_repeat_caller,
    zoned.wait_seconds,
    zoned.queue_wait_seconds,
    zoned.ring_seconds,
    zoned.talk_seconds,
    zoned.total_cost,
    zoned.opening_hours_timezone,
    zoned.started_at_schedule,
    holiday_calls.call_id is not null as is_holiday,
    holiday_calls.call_id is null and coalesce(scheduled_calls.is_open, 1) = 1
        as is_within_opening_hours
from zoned
left join scheduled_calls
    on scheduled_calls.account = zoned.account and scheduled_calls.call_id = zoned.call_id
left join holiday_calls
    on holiday_calls.account = zoned.account and holiday_calls.call_id = zoned.call_id
