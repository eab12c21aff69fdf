{#
  Whether a report period (a local day, month or interval of the account's report zone)
  was extracted whole, and if not why: the columns `is_whole_<name>` and
  `why_not_whole_<name>` (null when whole), given `spans`, the alias of
  int_tenios__extracted_spans left-joined on the account. A period is whole when its
  instants lie within the span the tap has counted: the first and last days of the
  extraction (start_date, end_date) and today are partial, like the cdr_counts rows
  with whole_day false. Its start `start_local` is wall-clock time in the report zone of
  the account `account`; it lasts `length` `unit`s.
#}
{% macro tenios_whole_period_columns(name, account, start_local, length, unit, spans='spans') -%}
  {%- set zone = tenios_report_zone(account) %}
  {%- set starts = tenios_zone_to_instant(start_local, zone) %}
  {%- set ends = tenios_zone_to_instant(dbt.dateadd(unit, length, 'cast(' ~ start_local ~ ' as ' ~ dbt.type_timestamp() ~ ')'), zone) %}
  {{- tenios_whole_instants_columns(name, starts, ends, spans) }}
{%- endmacro %}


{# The same for a period given by its instants, [starts, ends). #}
{% macro tenios_whole_instants_columns(name, starts, ends, spans='spans') -%}
    coalesce({{ spans }}.extracted_from <= {{ starts }} and {{ ends }} <= {{ spans }}.extracted_to, false)
        as is_whole_{{ name }},
    case
        when {{ spans }}.extracted_from is null
            then 'no cdr_counts: the tap has not counted this account'
        when {{ starts }} < {{ spans }}.extracted_from
            then 'partial: the extraction begins within it (start_date)'
        when {{ ends }} > {{ spans }}.extracted_to
            then 'partial: not over at the last run, or the extraction ends within it (end_date)'
    end as why_not_whole_{{ name }}
{%- endmacro %}
