-- Per account and local interval (tenios_interval_minutes: 15, 30 or 60) of every day
-- the account had calls, quiet intervals included (is_account_total: all its service
-- numbers together), and per service number and interval in which that number had
-- calls: the inputs of an Erlang C staffing model (calls offered to a person, average
-- handle time, service level and its threshold) with the KPIs of tenios__daily_kpis.
-- Intervals are real elapsed time from the local day's start: 92 or 100 quarter hours
-- on the days clocks change. Incremental: a run rebuilds the (account, local day) rows
-- whose calls were rebuilt, and the days not yet extracted whole.
{{ tenios_incremental_config(['account', 'interval_date_local']) }}
{%- set step = var('tenios_interval_minutes') * 60 %}
{#- Enough intervals for the longest local day (25 hours). #}
{%- set most = (25 * 3600 / step) | round(0, 'ceil') | int %}
{%- set counts = tenios_call_kpi_columns()['counts'] %}
{%- set measures = tenios_call_kpi_columns()['measures'] %}

with inbound as (

    {{ tenios_changed_rows(
        ref('int_tenios__inbound_calls'), ['account', 'start_date_local'],
        unsettled='not is_whole_day', this_keys=['account', 'interval_date_local']) | indent(4) }}

),

-- The account's days with calls, each with its start and length (23, 24 or 25 hours).
days as (

    select
        account,
        interval_date_local,
        day_start_at,
        {{ tenios_seconds_between('day_start_at', 'day_end_at') }} as day_seconds
    from (
        select distinct
            account,
            start_date_local as interval_date_local,
            {{ tenios_local_day_start('start_date_local') }} as day_start_at,
            {{ tenios_local_day_start(dbt.dateadd('day', 1, 'start_date_local')) }} as day_end_at
        from inbound
    ) as bounded

),

interval_numbers as (

    {% for number in range(most) -%}
    select {{ number }} as interval_number {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

-- Every interval of those days, in elapsed time: the last one ends at the next local
-- midnight (shorter only where a clock change is not a whole number of intervals).
spine as (

    select
        days.account,
        days.interval_date_local,
        {{ dbt.dateadd('second', 'interval_numbers.interval_number * ' ~ step, 'days.day_start_at') }}
            as interval_start_at,
        case
            when days.day_seconds - interval_numbers.interval_number * {{ step }} < {{ step }}
                then days.day_seconds - interval_numbers.interval_number * {{ step }}
            else {{ step }}
        end as interval_seconds
    from days
    cross join interval_numbers
    where interval_numbers.interval_number * {{ step }} < days.day_seconds

),

account_kpis as (

    select * from (
        {{ tenios_call_kpis('inbound', ['account', 'interval_start_at']) | indent(8) }}
    ) as grouped

),

number_kpis as (

    select * from (
        {{ tenios_call_kpis('inbound', ['account', 'start_date_local', 'service_number', 'interval_start_at']) | indent(8) }}
    ) as grouped

),

rows_ as (

    select
        spine.account,
        true as is_account_total,
        cast(null as {{ dbt.type_string() }}) as service_number,
        spine.interval_date_local,
        spine.interval_start_at,
        spine.interval_seconds,
        {%- for column in counts %}
        coalesce(kpis.{{ column }}, 0) as {{ column }},
        {%- endfor %}
        {%- for column in measures %}
        kpis.{{ column }}{% if not loop.last %},{% endif %}
        {%- endfor %}
    from spine
    left join account_kpis as kpis
        on kpis.account = spine.account
        and kpis.interval_start_at = spine.interval_start_at

    union all

    select
        spine.account,
        false as is_account_total,
        kpis.service_number,
        spine.interval_date_local,
        spine.interval_start_at,
        spine.interval_seconds,
        {%- for column in counts %}
        kpis.{{ column }},
        {%- endfor %}
        {%- for column in measures %}
        kpis.{{ column }}{% if not loop.last %},{% endif %}
        {%- endfor %}
    from number_kpis as kpis
    inner join spine
        on spine.account = kpis.account
        and spine.interval_start_at = kpis.interval_start_at

)

select
    rows_.account,
    is_account_total,
    service_number,
    interval_date_local,
    interval_start_at,
    {{ tenios_utc_to_local('interval_start_at', account='rows_.account') }} as interval_start_local,
    interval_seconds,
    {{ var('tenios_interval_minutes') }} as interval_minutes,
    {{ tenios_whole_period_columns('day', 'rows_.account', 'interval_date_local', 1, 'day') }},
    {{ tenios_whole_instants_columns(
        'interval', 'interval_start_at', dbt.dateadd('second', 'interval_seconds', 'interval_start_at')) }},
    {%- for column in counts + measures %}
    {{ column }},
    {%- endfor %}
    {{ tenios_built_at() }} as built_at
from rows_
left join {{ ref('int_tenios__extracted_spans') }} as spans on spans.account = rows_.account
