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


{#
  What changed since a model's last run. Every incremental model stamps its rows with
  `built_at` (tenios_built_at: the start of the dbt run that rebuilt them); a model's
  watermark is the newest stamp it holds. Rows of its parents stamped after it were
  rebuilt since (new legs, legs read again, the calls they belong to): the keys they
  carry (an account and local day, an account and call, ...) are what the model rebuilds,
  each from all of its inputs, replacing its rows of those keys (delete+insert on them).
  Work follows the legs that changed, not the history; a model that missed runs (or
  ran alone) catches up on everything its parents rebuilt meanwhile.
#}

{# The build's own stamp, the same for every model of one dbt run: an instant. #}
{% macro tenios_built_at() -%}
  {{ tenios_instant_literal(run_started_at.strftime('%Y-%m-%d %H:%M:%S.%f')) }}
{%- endmacro %}


{# The newest built_at of {{ this }}: its rows are rebuilt from parents stamped later. #}
{% macro tenios_watermark() -%}
  {%- set query -%}
    select coalesce(max(built_at), {{ tenios_instant_literal('1900-01-01 00:00:00') }}) from {{ this }}
  {%- endset -%}
  {#- A literal where it can be read now (as tenios_key_literals), so that the warehouse
      knows how few rows are newer when it plans. -#}
  {%- if tenios_can_look_ahead() -%}
    {%- set newest = run_query(query).columns[0].values()[0] -%}
    {%- if newest is not none and newest.tzinfo is not none -%}
      {{ return(tenios_instant_literal(
          newest.astimezone(modules.pytz.utc).strftime('%Y-%m-%d %H:%M:%S.%f'))) }}
    {%- endif -%}
  {%- endif -%}
  ({{ query }})
{%- endmacro %}


{# Whether a macro may query the warehouse now for what the model will read: in a run
   or build at the model's turn, not in a unit test or compile. #}
{% macro tenios_can_look_ahead() -%}
  {{ return(execute and flags.WHICH in ('run', 'build') and this is not none
      and not (this | string).startswith('__dbt__cte__') and model.resource_type == 'model') }}
{%- endmacro %}


{#
  `select * from relation` on a full build; on an incremental run, only the rows of
  `relation` whose `keys` (columns of relation and of every parent) occur among the rows
  of `parents` (default: relation itself) rebuilt since {{ this }}'s watermark. E.g. the
  legs of every (account, start_date_local) that has a leg rebuilt since the daily mart
  last ran; or every leg of the calls that have one.

  `unsettled`: a condition on {{ this }}'s rows whose keys are rebuilt whatever their
  parents did, e.g. 'not is_whole_day': a day the extraction had not yet covered whole
  when it was built becomes whole without any of its legs changing (`this_keys`: the
  columns of {{ this }} that hold `keys`, if named otherwise).
#}
{% macro tenios_changed_rows(relation, keys, parents=none, unsettled=none, this_keys=none) -%}
  {%- set parents = parents or [relation] -%}
  {%- set this_keys = this_keys or keys -%}
  {%- if tenios_is_incremental() -%}
    {%- set watermark = tenios_watermark() -%}
    {%- set changed -%}
        {%- for parent in parents %}
        select {{ keys | join(', ') }}
        from {{ parent }}
        where built_at > {{ watermark }}
        {% if not loop.last %}union{% endif %}
        {%- endfor %}
        {%- if unsettled %}
        union
        select {% for key in keys %}{{ this_keys[loop.index0] }} as {{ key }}{% if not loop.last %}, {% endif %}{% endfor %}
        from {{ this }}
        where {{ unsettled }}
        {%- elif parents | length == 1 %}
        group by {{ keys | join(', ') }}
        {%- endif %}
    {%- endset -%}
    {%- set literals = tenios_key_literals(changed, keys) -%}
    select rows_.*
    from {{ relation }} as rows_
    {%- if literals is not none %}
    where {{ literals }}
    {%- else %}
    inner join ({{ changed }}
    ) as changed_
        on {% for key in keys %}changed_.{{ key }} = rows_.{{ key }}{% if not loop.last %} and {% endif %}{% endfor %}
    {%- endif %}
  {%- else -%}
    select * from {{ relation }}
  {%- endif -%}
{%- endmacro %}


{#
  The condition "rows_'s `keys` are among the rows of the query `changed`", with the
  keys written out as literals: run first, at the model's turn in the build, so that the
  warehouse plans the rebuild for the few keys an hourly run has (PostgreSQL then reads
  them through the indexes; given the query to join instead, it cannot know how few
  they are and may scan the whole table). None where the keys cannot be listed so: in
  a unit test or `dbt compile` (nothing to query), past tenios_literal_keys_limit keys
  (a catch-up after a long pause: the join then), or for a key that is neither text nor
  a date.
#}
{% macro tenios_key_literals(changed, keys) -%}
  {%- if not tenios_can_look_ahead() -%}
    {{ return(none) }}
  {%- endif -%}
  {%- set limit = var('tenios_literal_keys_limit') | int -%}
  {%- set found = run_query('select distinct * from (' ~ changed ~ ') as changed_ limit ' ~ (limit + 1)) -%}
  {%- if found.rows | length > limit -%}
    {{ return(none) }}
  {%- endif -%}
  {%- if found.rows | length == 0 -%}
    {{ return('1 = 0') }}
  {%- endif -%}
  {%- set tuples = [] -%}
  {%- for row in found.rows -%}
    {%- set values = [] -%}
    {%- for value in row -%}
      {%- if value is string -%}
        {%- do values.append("'" ~ value | replace("'", "''") ~ "'") -%}
      {%- elif value is not none and value.isoformat is defined and value.hour is not defined -%}
        {#- A date (a datetime has an hour). -#}
        {%- do values.append("cast('" ~ value.isoformat() ~ "' as date)") -%}
      {%- else -%}
        {{ return(none) }}
      {%- endif -%}
    {%- endfor -%}
    {%- do tuples.append('(' ~ values | join(', ') ~ ')') -%}
  {%- endfor -%}
  {{ return('(rows_.' ~ keys | join(', rows_.') ~ ') in (' ~ tuples | join(', ') ~ ')') }}
{%- endmacro %}


{#
  The config every incremental model of this project shares: delete+insert on
  `unique_key` (for the daily and monthly marts, the account and period: a run replaces
  the periods it rebuilds), a schema change stops the run (rebuild with --full-refresh),
  and PostgreSQL indexes for the key, the watermark and `extra_indexes`.
#}
{% macro tenios_incremental_config(unique_key, extra_indexes=[]) -%}
  {{ config(
      materialized='incremental',
      unique_key=unique_key,
      incremental_strategy='delete+insert',
      on_schema_change='fail',
      indexes=tenios_indexes([unique_key, ['built_at']] + extra_indexes),
  ) }}
{%- endmacro %}
