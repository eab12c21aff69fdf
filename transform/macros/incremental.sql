{#
  Incremental models rebuild what may have changed since their last run: the rows
  whose `started_at` lies within the tap's lookback (tenios_lookback_minutes: a run
  reads that far back again) plus the settling period (tenios_settle_hours: legs that
  appear late) before the newest row already built. Everything older is final.
#}

{# Whether to render an incremental model's incremental branch. #}
{% macro tenios_is_incremental() -%}
  {%- set mode = var('tenios_incremental_mode') -%}
  {%- if mode == 'incremental' -%}
    {{ return(true) }}
  {%- elif mode == 'full' -%}
    {{ return(false) }}
  {%- endif -%}
  {#- A unit test without an is_incremental override has no relation to look for. -#}
  {{ return(this is not none and is_incremental()) }}
{%- endmacro %}


{# The instant from which rows of {{ this }} are rebuilt (all of them if it is empty). #}
{% macro tenios_rebuild_from(column='started_at') -%}
  {%- set minutes = var('tenios_lookback_minutes') + 60 * var('tenios_settle_hours') -%}
  coalesce(
    (select {{ dbt.dateadd('minute', -1 * minutes, 'max(' ~ column ~ ')') }} from {{ this }}),
    {{ tenios_instant_literal('1900-01-01 00:00:00') }}
  )
{%- endmacro %}
