{#
  Incremental models rebuild what may have changed since their last run, per account:
  the rows whose `started_at` lies within the tap's lookback (tenios_lookback_minutes:
  a run reads that far back again) plus the settling period (tenios_settle_hours: legs
  that appear late) before the newest row of that account already built. Everything
  older is final. Per account, because each account's tap runs on its own: one that
  lags (a failing run, a paused schedule) catches up later, and its legs must not be
  measured against another account's newest.
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


{#
  One row per account of tenios_accounts(): (account, rebuild_from), the instant from
  which that account's rows of {{ this }} are rebuilt; null when {{ this }} holds none of
  its rows yet (all of them are built). One lookup per account, so that an index on
  (account, started_at) answers it without reading the table.
#}
{% macro tenios_rebuild_bounds(column='started_at') -%}
  {%- set minutes = var('tenios_lookback_minutes') + 60 * var('tenios_settle_hours') -%}
  {%- for entry in tenios_accounts() %}
    select
        cast('{{ entry["account"] }}' as {{ dbt.type_string() }}) as account,
        (
            select {{ dbt.dateadd('minute', -1 * minutes, 'max(' ~ column ~ ')') }}
            from {{ this }}
            where account = '{{ entry["account"] }}'
        ) as rebuild_from
    {% if not loop.last %}union all{% endif %}
  {%- endfor %}
{%- endmacro %}


{#
  A condition keeping the rows of `relation_alias` (with columns account and `column`)
  an incremental run rebuilds, given the CTE `bounds_alias` of tenios_rebuild_bounds
  left-joined on account: an account without a bound is rebuilt whole.
#}
{% macro tenios_within_rebuild(relation_alias, bounds_alias='bounds', column='started_at') -%}
  ({{ bounds_alias }}.rebuild_from is null or {{ relation_alias }}.{{ column }} >= {{ bounds_alias }}.rebuild_from)
{%- endmacro %}


{#
  PostgreSQL indexes for an incremental model (config `indexes`): the lookups of its
  incremental runs. Other warehouses get none (DuckDB and Snowflake prune by their
  own min/max statistics; DuckDB's indexes would slow its deletes).
#}
{% macro tenios_indexes(column_lists) -%}
  {%- set indexes = [] -%}
  {%- if target.type == 'postgres' -%}
    {%- for columns in column_lists -%}
      {%- do indexes.append({'columns': columns}) -%}
    {%- endfor -%}
  {%- endif -%}
  {{ return(indexes) }}
{%- endmacro %}
