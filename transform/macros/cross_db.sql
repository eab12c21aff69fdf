{#
  The few expressions that differ between DuckDB, PostgreSQL and Snowflake, each
  dispatched per adapter (default__ is the PostgreSQL/DuckDB spelling). Everything
  else uses dbt's own cross-database macros (dbt.datediff, dbt.dateadd, dbt.type_*).
#}

{#
  Instants. The loaders write `timestamp without time zone` (TIMESTAMP, TIMESTAMP_NTZ)
  holding UTC, which a reader in another session time zone can misread (PostgreSQL's
  `::timestamptz` reads it in the session's zone). Staging turns them into each
  warehouse's zone-aware type (tenios_instant), so every model exposes instants that
  mean one moment whatever the session; local days and hours are computed from them in
  an explicit zone (tenios_utc_to_local), never in the session's.
#}

{# The zone-aware timestamp type: timestamptz, TIMESTAMPTZ, TIMESTAMP_TZ. #}
{% macro tenios_type_instant() -%}
  {{ return(adapter.dispatch('tenios_type_instant', 'tenios')()) }}
{%- endmacro %}

{% macro default__tenios_type_instant() -%}
  timestamp with time zone
{%- endmacro %}

{% macro snowflake__tenios_type_instant() -%}
  timestamp_tz
{%- endmacro %}


{# A loaded timestamp holding UTC (naive, as the loaders write it) as a zone-aware instant. #}
{% macro tenios_instant(column) -%}
  {{ return(adapter.dispatch('tenios_instant', 'tenios')(column)) }}
{%- endmacro %}

{% macro default__tenios_instant(column) -%}
  (cast({{ column }} as {{ dbt.type_timestamp() }}) at time zone 'UTC')
{%- endmacro %}

{# Through the epoch: right for TIMESTAMP_NTZ holding UTC and for target-snowflake's
   timestamp_type TIMESTAMP_TZ or TIMESTAMP_LTZ alike, whatever the session's zone. #}
{% macro snowflake__tenios_instant(column) -%}
  convert_timezone('UTC', to_timestamp_tz(date_part(epoch_nanosecond, {{ column }}), 9))
{%- endmacro %}


{# A literal instant, e.g. '2024-03-01 00:00:00' (UTC). #}
{% macro tenios_instant_literal(utc_text) -%}
  {{ tenios_instant("cast('" ~ utc_text ~ "' as " ~ dbt.type_timestamp() ~ ")") }}
{%- endmacro %}


{# An instant as wall-clock time in `tz`, by default in the report zone of the row's
   account (the column `account`; macro tenios_report_zone). #}
{% macro tenios_utc_to_local(column, tz=none, account='account') -%}
  {{ tenios_utc_to_zone(column, ("'" ~ tz ~ "'") if tz else tenios_report_zone(account)) }}
{%- endmacro %}

{# The same, with the zone an SQL expression (e.g. a column holding IANA names). #}
{% macro tenios_utc_to_zone(column, zone) -%}
  {{ return(adapter.dispatch('tenios_utc_to_zone', 'tenios')(column, zone)) }}
{%- endmacro %}

{% macro default__tenios_utc_to_zone(column, zone) -%}
  cast(({{ column }}) at time zone {{ zone }} as {{ dbt.type_timestamp() }})
{%- endmacro %}

{% macro snowflake__tenios_utc_to_zone(column, zone) -%}
  cast(convert_timezone({{ zone }}, {{ column }}) as timestamp_ntz)
{%- endmacro %}


{# The instant at which the wall-clock time `local` (a naive timestamp) occurs in `zone`. #}
{% macro tenios_zone_to_instant(local, zone) -%}
  {{ return(adapter.dispatch('tenios_zone_to_instant', 'tenios')(local, zone)) }}
{%- endmacro %}

{% macro default__tenios_zone_to_instant(local, zone) -%}
  (cast({{ local }} as {{ dbt.type_timestamp() }}) at time zone {{ zone }})
{%- endmacro %}

{% macro snowflake__tenios_zone_to_instant(local, zone) -%}
  {{ tenios_instant('convert_timezone(' ~ zone ~ ", 'UTC', cast(" ~ local ~ ' as timestamp_ntz))') }}
{%- endmacro %}


{# The instant a local day (a date in the report zone of the row's account, the column
   `account`) begins: its local midnight. #}
{% macro tenios_local_day_start(day, account='account') -%}
  {{ tenios_zone_to_instant(day, tenios_report_zone(account)) }}
{%- endmacro %}


{# The current instant (zone-aware), comparable with the models' instants. #}
{% macro tenios_now() -%}
  {{ return(adapter.dispatch('tenios_now', 'tenios')()) }}
{%- endmacro %}

{% macro default__tenios_now() -%}
  current_timestamp
{%- endmacro %}

{% macro snowflake__tenios_now() -%}
  convert_timezone('UTC', current_timestamp())
{%- endmacro %}


{# The continuous (interpolated) percentile of `expression` as an aggregate; nulls ignored. #}
{% macro tenios_percentile(expression, fraction) -%}
  {{ return(adapter.dispatch('tenios_percentile', 'tenios')(expression, fraction)) }}
{%- endmacro %}

{% macro default__tenios_percentile(expression, fraction) -%}
  percentile_cont({{ fraction }}) within group (order by {{ expression }})
{%- endmacro %}

{% macro duckdb__tenios_percentile(expression, fraction) -%}
  quantile_cont({{ expression }}, {{ fraction }})
{%- endmacro %}


{# ISO weekday, 1 = Monday ... 7 = Sunday. #}
{% macro tenios_iso_weekday(column) -%}
  {{ return(adapter.dispatch('tenios_iso_weekday', 'tenios')(column)) }}
{%- endmacro %}

{% macro default__tenios_iso_weekday(column) -%}
  cast(extract(isodow from {{ column }}) as {{ dbt.type_int() }})
{%- endmacro %}

{% macro snowflake__tenios_iso_weekday(column) -%}
  cast(extract(dayofweekiso from {{ column }}) as {{ dbt.type_int() }})
{%- endmacro %}


{# Hour of the day, 0-23. #}
{% macro tenios_hour(column) -%}
  cast(extract(hour from {{ column }}) as {{ dbt.type_int() }})
{%- endmacro %}


{#
  Money, exactly: a DECIMAL whatever the loader made of `cost` (NUMERIC in PostgreSQL,
  DOUBLE in DuckDB, FLOAT in Snowflake, or a decimal string). A float holding a value of
  at most 15 significant digits is rounded back to those digits by the cast.
#}
{% macro tenios_exact_decimal(column) -%}
  cast({{ column }} as decimal({{ var('tenios_cost_precision') }}, {{ var('tenios_cost_scale') }}))
{%- endmacro %}


{# A ratio or average rounded for reporting: exact decimal arithmetic on every database. #}
{% macro tenios_round(expression, places) -%}
  cast(round(cast({{ expression }} as decimal(38, 10)), {{ places }}) as decimal(38, {{ places }}))
{%- endmacro %}


{#
  Second boundaries crossed between two instants, as an integer on every database (the
  whole seconds between them for whole-second stamps). PostgreSQL's and DuckDB's: from
  the epoch, since their dbt.datediff reads a timestamptz in the session's zone (an
  hour off across a clock change: 3615 s for a 15 s ring across New York's spring
  change in a New York session). Snowflake's datediff is right on TIMESTAMP_TZ values
  that are both in UTC.
#}
{% macro tenios_seconds_between(start, end) -%}
  {{ return(adapter.dispatch('tenios_seconds_between', 'tenios')(start, end)) }}
{%- endmacro %}

{% macro default__tenios_seconds_between(start, end) -%}
  cast({{ dbt.datediff(start, end, 'second') }} as {{ dbt.type_bigint() }})
{%- endmacro %}

{% macro postgres__tenios_seconds_between(start, end) -%}
  cast(floor(extract(epoch from {{ end }})) - floor(extract(epoch from {{ start }})) as {{ dbt.type_bigint() }})
{%- endmacro %}

{% macro duckdb__tenios_seconds_between(start, end) -%}
  {{ postgres__tenios_seconds_between(start, end) }}
{%- endmacro %}


{# A sum of money, exact, wide enough for any total. #}
{% macro tenios_money_sum(column) -%}
  cast(sum({{ column }}) as decimal(38, {{ var('tenios_cost_scale') }}))
{%- endmacro %}


{# numerator / denominator, null when the denominator is zero. #}
{% macro tenios_ratio(numerator, denominator, places=4) -%}
  {{ tenios_round('(' ~ numerator ~ ') * 1.0 / nullif(' ~ denominator ~ ', 0)', places) }}
{%- endmacro %}


{# 1 when `condition` holds, else 0: sums of flags count rows on every database. #}
{% macro tenios_flag(condition) -%}
  (case when {{ condition }} then 1 else 0 end)
{%- endmacro %}


{# Minutes since local midnight of a wall-clock timestamp, 0-1439. #}
{% macro tenios_minute_of_day(column) -%}
  ({{ tenios_hour(column) }} * 60 + cast(extract(minute from {{ column }}) as {{ dbt.type_int() }}))
{%- endmacro %}


{# Only the digits of a string (e.g. a phone number written with spaces or dashes). #}
{% macro tenios_digits(column) -%}
  {{ return(adapter.dispatch('tenios_digits', 'tenios')(column)) }}
{%- endmacro %}

{% macro default__tenios_digits(column) -%}
  regexp_replace({{ column }}, '[^0-9]', '', 'g')
{%- endmacro %}

{% macro snowflake__tenios_digits(column) -%}
  regexp_replace({{ column }}, '[^0-9]', '')
{%- endmacro %}
