-- Fails with each account, local day (or month, or the account's whole history) and
-- mart whose legs, calls or exact cost differ from the loaded legs' own: the newest copy
-- of every leg in the loader's tables, counted and summed here apart from the models. A
-- leg the incremental models lost (or counted twice) between the loaded tables and a
-- mart fails the build on the day it belongs to. Each row names the mart, what the
-- loaded legs give and what the mart holds.
--
-- Always, the copies loaded against tenios__legs (and, where each leg has one copy, as
-- the loaders that upsert on uuid keep them, their exact cost): per day in `dbt test`,
-- with --full-refresh or tenios_test_everything; per account in a `dbt build` that
-- rebuilt models, where it is the hourly job's one look at the whole history (a leg
-- lost anywhere, or loaded for a day no model rebuilt, still fails it: `dbt test`
-- then names the day). In such a build the marts are tied on the days and months this
-- run rebuilt in any model; the others were tied when they were built.
{%- set day = 'cast(' ~ tenios_utc_to_local('started_at') ~ ' as date)' %}
{%- set month = 'cast(' ~ dbt.date_trunc('month', day) ~ ' as date)' %}
{#- (mart, its period column, its count, its cost, the loaded legs' count and cost). #}
{%- set daily = [
    ('tenios__legs', 'start_date_local', 'count(*)', 'cost', 'legs', 'legs_cost'),
    ('tenios__spend', 'start_date_local', 'sum(legs)', 'spend_all_legs', 'legs', 'legs_cost'),
    ('tenios__daily_hangup_causes', 'start_date_local', 'sum(legs)', 'legs_cost', 'legs', 'legs_cost'),
    ('tenios__forward_destinations', 'start_date_local', 'sum(seizures)', 'forward_legs_cost', 'forwards', 'forwards_cost'),
    ('tenios__calls', 'start_date_local', 'count(*)', 'total_cost', 'calls', 'calls_cost'),
    ('tenios__daily_totals', 'start_date_local', 'sum(calls_offered)', 'inbound_calls_cost', 'inbound', 'inbound_cost'),
    ('tenios__daily_kpis', 'start_date_local', 'sum(calls_offered)', 'inbound_calls_cost', 'inbound', 'inbound_cost'),
    ('tenios__interval_kpis', 'interval_date_local', 'sum(calls_offered)', 'inbound_calls_cost', 'inbound', 'inbound_cost'),
    ('tenios__interval_kpis', 'interval_date_local', 'sum(calls_offered)', 'inbound_calls_cost', 'inbound', 'inbound_cost'),
] %}
{%- set monthly = [
    ('tenios__monthly_spend', 'start_month_local', 'sum(legs)', 'spend_all_legs', 'legs', 'legs_cost'),
] %}
{%- set whole = [
    ('tenios__hourly_heatmap', none, 'sum(calls_offered)', 'inbound_calls_cost', 'inbound', 'inbound_cost'),
] %}

{%- set scoped = execute and flags.WHICH == 'build' and not flags.FULL_REFRESH
      and not var('tenios_test_everything', false) %}
{%- set stamp = tenios_built_at() %}
{%- set daily_marts = [
    ('tenios__legs', 'start_date_local'), ('tenios__calls', 'start_date_local'),
    ('tenios__spend', 'start_date_local'), ('tenios__daily_hangup_causes', 'start_date_local'),
    ('tenios__forward_destinations', 'start_date_local'), ('tenios__daily_totals', 'start_date_local'),
    ('tenios__daily_kpis', 'start_date_local'), ('tenios__interval_kpis', 'interval_date_local'),
] %}

{#- The whole history per account (hourly) or per day: no time zone to compute per leg. #}
{%- set raw_period = 'cast(null as date)' if scoped else day %}
{%- set built_period = 'cast(null as date)' if scoped else 'start_date_local' %}

with raw_days as (

    select account, {{ raw_period }} as period, count(*) as copies, {{ tenios_money_sum('cost') }} as cost
    from {{ ref('stg_tenios__cdr_legs') }}
    group by account{% if not scoped %}, {{ day }}{% endif %}

),

built_days as (

    select
        account,
        {{ built_period }} as period,
        count(*) as legs,
        sum(copies_loaded) as copies,
        {{ tenios_money_sum('cost') }} as cost
    from {{ ref('tenios__legs') }}
    group by account{% if not scoped %}, start_date_local{% endif %}

),

-- The days whose marts are tied: those this run rebuilt in any of them (or every day).
checked as (

    {%- if scoped %}
    {%- for mart, period in daily_marts %}
    select account, {{ period }} as period from {{ ref(mart) }} where built_at = {{ stamp }}
    {% if not loop.last %}union{% endif %}
    {%- endfor %}
    {%- else %}
    select account, period from raw_days
    {%- endif %}

),

-- Those days and the days either side (a call's legs can straddle midnight).
around as (

    select account, period from checked
    union
    select account, cast({{ dbt.dateadd('day', -1, 'period') }} as date) from checked
    union
    select account, cast({{ dbt.dateadd('day', 1, 'period') }} as date) from checked

),

-- The loaded legs of those days, each leg's newest copy.
copies as (

    select
        account,
        leg_id,
        call_id,
        leg_role,
        started_at,
        cost,
        row_number() over (partition by account, leg_id order by {{ tenios_newest_first() }})
            as copy_rank
    from (
        select raw_legs.*
        from {{ ref('stg_tenios__cdr_legs') }} as raw_legs
        {%- if scoped %}
        inner join around
            on around.account = raw_legs.account
            and around.period = cast({{ tenios_utc_to_local('raw_legs.started_at', account='raw_legs.account') }} as date)
        -- A plain bound first (a day before the earliest day checked, whatever the zone),
        -- so that the local day is computed for the recent legs only.
        where raw_legs.started_at >= (
            select {{ tenios_instant(dbt.dateadd('day', -1, 'cast(min(period) as ' ~ dbt.type_timestamp() ~ ')')) }}
            from around
        )
        {%- endif %}
    ) as raw_legs

),

loaded as (

    select * from copies where copy_rank = 1

),

-- Each call on the local day of its first leg (its inbound leg's, when loaded).
calls as (

    select
        account,
        call_id,
        coalesce(min(case when leg_id = call_id then started_at end), min(started_at))
            as started_at,
        max({{ tenios_flag("leg_id = call_id and leg_role = 'inbound'") }}) as is_inbound,
        {{ tenios_money_sum('cost') }} as cost
    from loaded
    group by account, call_id

),

by_leg_day as (

    select
        account,
        {{ day }} as period,
        count(*) as legs,
        {{ tenios_money_sum('cost') }} as legs_cost,
        sum({{ tenios_flag("leg_role = 'forward' and leg_id <> call_id") }}) as forwards,
        {{ tenios_money_sum("case when leg_role = 'forward' and leg_id <> call_id then cost else 0 end") }}
            as forwards_cost
    from loaded
    group by account, {{ day }}

),

by_call_day as (

    select
        account,
        {{ day }} as period,
        count(*) as calls,
        {{ tenios_money_sum('cost') }} as calls_cost,
        sum(is_inbound) as inbound,
        {{ tenios_money_sum('case when is_inbound = 1 then cost else 0 end') }} as inbound_cost
    from calls
    group by account, {{ day }}

),

by_month as (

    {%- if scoped %}
    -- The months of the days checked and the months rebuilt, from tenios__spend (tied to
    -- the loaded legs per day when its days were built).
    select account, start_month_local as period, sum(legs) as legs, {{ tenios_money_sum('spend_all_legs') }} as legs_cost
    from {{ ref('tenios__spend') }}
    where (account, start_month_local) in (
        select account, cast({{ dbt.date_trunc('month', 'period') }} as date) from checked
        union
        select account, start_month_local
        from {{ ref('tenios__monthly_spend') }}
        where built_at = {{ stamp }}
    )
    group by account, start_month_local
    {%- else %}
    select
        account,
        {{ month }} as period,
        count(*) as legs,
        {{ tenios_money_sum('cost') }} as legs_cost
    from loaded
    group by account, {{ month }}
    {%- endif %}

),

by_account as (

    select
        account,
        cast(null as date) as period,
        sum(is_inbound) as inbound,
        {{ tenios_money_sum('case when is_inbound = 1 then cost else 0 end') }} as inbound_cost
    from calls
    group by account

),

{%- set checks = [] %}
{%- set interval_rows = ['is_account_total', 'not is_account_total'] %}
{#- The heatmap (a view over every call) only when every day is checked. #}
{%- for mart, period, mart_count, mart_cost, count, cost in daily + monthly + ([] if scoped else whole) %}
  {%- if mart in ('tenios__legs', 'tenios__spend', 'tenios__daily_hangup_causes', 'tenios__forward_destinations') %}
    {%- set source = 'by_leg_day' %}
  {%- elif mart in ('tenios__monthly_spend',) %}
    {%- set source = 'by_month' %}
  {%- elif period is none %}
    {%- set source = 'by_account' %}
  {%- else %}
    {%- set source = 'by_call_day' %}
  {%- endif %}
  {#- The interval mart twice: its account rows, then its service numbers' rows. #}
  {%- set filter = interval_rows.pop(0) if mart == 'tenios__interval_kpis' else none %}
  {%- do checks.append((mart, period, mart_count, mart_cost, count, cost, source, filter)) %}
{%- endfor %}

compared as (

    select
        coalesce(raw_days.account, built_days.account) as account,
        coalesce(raw_days.period, built_days.period) as period,
        'tenios__legs (copies loaded)' as mart,
        coalesce(raw_days.copies, 0) as loaded_count,
        coalesce(built_days.copies, 0) as mart_count,
        -- Exact cost where each leg has one copy; other days tie their counts only.
        case
            when built_days.copies = built_days.legs or built_days.copies is null
                then coalesce(raw_days.cost, 0)
            else built_days.cost
        end as loaded_cost,
        coalesce(built_days.cost, 0) as mart_cost
    from raw_days
    full outer join built_days
        on built_days.account = raw_days.account
        and (built_days.period = raw_days.period or (built_days.period is null and raw_days.period is null))

    {%- for mart, period, mart_count, mart_cost, count, cost, source, filter in checks %}
    {%- set period_sql = period if period else 'cast(null as date)' %}
    {%- set conditions = [filter] if filter else [] %}
    {%- if scoped and source != 'by_month' %}
      {%- do conditions.append('(account, ' ~ period ~ ') in (select account, period from checked)') %}
    {%- elif scoped %}
      {%- do conditions.append('(account, ' ~ period ~ ') in (select account, period from by_month)') %}
    {%- endif %}
    union all
    select
        coalesce(loaded.account, mart.account) as account,
        coalesce(loaded.period, mart.period) as period,
        '{{ mart }}{{ " where " ~ filter if filter else "" }}' as mart,
        coalesce(loaded.{{ count }}, 0) as loaded_count,
        coalesce(mart.counted, 0) as mart_count,
        coalesce(loaded.{{ cost }}, 0) as loaded_cost,
        coalesce(mart.cost, 0) as mart_cost
    from (
        select * from {{ source }}
        {%- if scoped and source != 'by_month' %}
        where (account, period) in (select account, period from checked)
        {%- endif %}
    ) as loaded
    full outer join (
        select
            account,
            {{ period_sql }} as period,
            {{ mart_count }} as counted,
            {{ tenios_money_sum(mart_cost) }} as cost
        from {{ ref(mart) }}
        {% if conditions %}where {{ conditions | join(' and ') }}{% endif %}
        group by account{% if period %}, {{ period }}{% endif %}
    ) as mart
        on mart.account = loaded.account
        and (mart.period = loaded.period or (mart.period is null and loaded.period is null))
    {%- endfor %}

)

select *
from compared
where loaded_count <> mart_count or loaded_cost <> mart_cost
