{#
  The few expressions that differ between DuckDB, PostgreSQL and Snowflake, each
  dispatched per adapter (default__ is the PostgreSQL/DuckDB spelling). Everything
  else uses dbt's own cross-database macros (dbt.datediff, dbt.dateadd, dbt.type_*).
#}

{# A naive UTC timestamp (what every declared loader writes) as wall-clock time in `tz`. #}
{% macro tenios_utc_to_local(column, tz=none) -%}
  {{ tenios_utc_to_zone(column, "'" ~ (tz or var('tenios_report_timezone')) ~ "'") }}
{%- endmacro %}

{# The same, with the zone an SQL expression (e.g. a column holding IANA names). #}
{% macro tenios_utc_to_zone(column, zone) -%}
  {{ return(adapter.dispatch('tenios_utc_to_zone', 'tenios')(column, zone)) }}
{%- endmacro %}

{% macro default__tenios_utc_to_zone(column, zone) -%}
  cast((({{ column }}) at time zone 'UTC') at time zone {{ zone }} as {{ dbt.type_timestamp() }})
{%- endmacro %}

{% macro snowflake__tenios_utc_to_zone(column, zone) -%}
  convert_timezone('UTC', {{ zone }}, cast({{ column }} as timestamp_ntz))
{%- endmacro %}


{# The current instant as a naive UTC timestamp, comparable with the loaded stamps. #}
{% macro tenios_utc_now() -%}
  {{ return(adapter.dispatch('tenios_utc_now', 'tenios')()) }}
{%- endmacro %}

{% macro default__tenios_utc_now() -%}
  cast(current_timestamp at time zone 'UTC' as {{ dbt.type_timestamp() }})
{%- endmacro %}

{% macro snowflake__tenios_utc_now() -%}
  convert_timezone('UTC', current_timestamp())::timestamp_ntz
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


{# Whole seconds between two timestamps, as an integer on every database. #}
{% macro tenios_seconds_between(start, end) -%}
  cast({{ dbt.datediff(start, end, 'second') }} as {{ dbt.type_bigint() }})
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
