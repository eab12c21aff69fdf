-- Inbound calls with whether each started within its service number's opening hours
-- (in the schedule's own zone; a number without opening hours is always open) and the
-- local interval (tenios_interval_minutes) it started in. Ephemeral: the KPI marts'
-- common input, so opening hours apply without rebuilding tenios__calls.
{%- set minutes = var('tenios_interval_minutes') %}
{%- if minutes not in [15, 30, 60] %}
  {{ exceptions.raise_compiler_error("tenios_interval_minutes must be 15, 30 or 60, not " ~ minutes) }}
{%- endif %}

with calls as (

    select * from {{ ref('tenios__calls') }}
    where call_kind = 'inbound'

),

hours as (

    select * from {{ ref('int_tenios__opening_hours') }}

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

)

select
    zoned.*,
    opening_hours_timezone is null or exists (
        select 1
        from hours
        where hours.service_number = zoned.service_number
            and coalesce(hours.account, zoned.account) = zoned.account
            and hours.weekday = {{ tenios_iso_weekday('zoned.started_at_schedule') }}
            and {{ tenios_minute_of_day('zoned.started_at_schedule') }} >= hours.opens_minute
            and {{ tenios_minute_of_day('zoned.started_at_schedule') }} < hours.closes_minute
    ) as is_within_opening_hours,
    {{ dbt.dateadd(
        'minute',
        'cast(floor(' ~ tenios_minute_of_day('started_at_local') ~ ' / ' ~ minutes ~ '.0) as '
            ~ dbt.type_int() ~ ') * ' ~ minutes,
        'cast(start_date_local as ' ~ dbt.type_timestamp() ~ ')',
    ) }} as interval_start_local
from zoned
