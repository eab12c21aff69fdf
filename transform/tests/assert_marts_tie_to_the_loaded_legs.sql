-- Fails with each account, local day (or month, or the account's whole history) and
-- mart whose legs, calls or exact cost differ from the loaded legs' own: the newest copy
-- of every leg in the loader's tables, counted and summed here apart from the models. A
-- leg the incremental models lost (or counted twice) between the loaded tables and a
-- mart fails the build on the day it belongs to. Each row names the mart, the figure,
-- what the loaded legs give and what the mart holds.
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

with copies as (

    select
        account,
        leg_id,
        call_id,
        leg_role,
        started_at,
        cost,
        row_number() over (partition by account, leg_id order by {{ tenios_newest_first() }})
            as copy_rank
    from {{ ref('stg_tenios__cdr_legs') }}

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

    select
        account,
        {{ month }} as period,
        count(*) as legs,
        {{ tenios_money_sum('cost') }} as legs_cost
    from loaded
    group by account, {{ month }}

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
{%- for mart, period, mart_count, mart_cost, count, cost in daily + monthly + whole %}
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

    {%- for mart, period, mart_count, mart_cost, count, cost, source, filter in checks %}
    {%- set period_sql = period if period else 'cast(null as date)' %}
    select
        coalesce(loaded.account, mart.account) as account,
        coalesce(loaded.period, mart.period) as period,
        '{{ mart }}{{ " where " ~ filter if filter else "" }}' as mart,
        coalesce(loaded.{{ count }}, 0) as loaded_count,
        coalesce(mart.counted, 0) as mart_count,
        coalesce(loaded.{{ cost }}, 0) as loaded_cost,
        coalesce(mart.cost, 0) as mart_cost
    from {{ source }} as loaded
    full outer join (
        select
            account,
            {{ period_sql }} as period,
            {{ mart_count }} as counted,
            {{ tenios_money_sum(mart_cost) }} as cost
        from {{ ref(mart) }}
        {% if filter %}where {{ filter }}{% endif %}
        group by account{% if period %}, {{ period }}{% endif %}
    ) as mart
        on mart.account = loaded.account
        and (mart.period = loaded.period or (mart.period is null and loaded.period is null))
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}

)

select *
from compared
where loaded_count <> mart_count or loaded_cost <> mart_cost
