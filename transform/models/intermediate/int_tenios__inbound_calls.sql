-- Inbound calls with whether each started within its service number's opening hours
-- (in the schedule's own zone, the rows valid on that day; a number without opening
-- hours that day is always open; a holiday is closed) and the local interval
-- (tenios_interval_minutes) it started in: the KPI marts' common input.
-- Incremental: a run rebuilds the calls tenios__calls rebuilt since (a change of opening
-- hours or holidays applies to the days built after it; --full-refresh applies it to
-- every day).
{{ tenios_incremental_config(['account', 'call_id'], [['account', 'start_date_local']]) }}
{%- set minutes = var('tenios_interval_minutes') %}
{%- if minutes not in [15, 30, 60] %}
  {{ exceptions.raise_compiler_error("tenios_interval_minutes must be 15, 30 or 60, not " ~ minutes) }}
{%- endif %}
{#- The interval: elapsed time from the local day's start (an instant), in whole
    intervals, so that a day of 23 or 25 hours has 92 or 100 quarter hours. #}
{%- set day_start = tenios_local_day_start('zoned.start_date_local', account='zoned.account') %}
{%- set interval_start_at = dbt.dateadd(
    'second',
    'cast(floor(' ~ tenios_seconds_between(day_start, 'zoned.started_at') ~ ' / ' ~ (minutes * 60) ~ '.0) as '
        ~ dbt.type_bigint() ~ ') * ' ~ (minutes * 60),
    day_start) %}

with calls as (

    select * from (
        {{ tenios_changed_rows(ref('tenios__calls'), ['account', 'call_id']) | indent(8) }}
    ) as changed
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
        {{ tenios_utc_to_zone('calls.started_at', 'zones.timezone') }} as started_at_schedule
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
    {{ tenios_utc_to_local(interval_start_at, account='zoned.account') }} as interval_start_local,
    {{ interval_start_at }} as interval_start_at,
    zoned.outcome,
    zoned.is_answered,
    zoned.is_answered_by_person,
    zoned.is_ner_effective,
    zoned.is_ner_effective_strict,
    zoned.is_caller_hangup_while_ringing,
    zoned.caller_number,
    zoned.wait_seconds,
    zoned.queue_wait_seconds,
    zoned.ring_seconds,
    zoned.talk_seconds,
    zoned.total_cost,
    zoned.opening_hours_timezone,
    zoned.started_at_schedule,
    holiday_calls.call_id is not null as is_holiday,
    holiday_calls.call_id is null and coalesce(scheduled_calls.is_open, 1) = 1
        as is_within_opening_hours,
    {{ tenios_built_at() }} as built_at
from zoned
left join scheduled_calls
    on scheduled_calls.account = zoned.account and scheduled_calls.call_id = zoned.call_id
left join holiday_calls
    on holiday_calls.account = zoned.account and holiday_calls.call_id = zoned.call_id
