-- Per account, service number and local interval (tenios_interval_minutes: 15, 30 or
-- 60) of every day the account had calls, quiet intervals included: the inputs of an
-- Erlang C staffing model (calls offered to a person, average handle time, service
-- level and its threshold) with the KPIs of tenios__daily_kpis.
{%- set minutes = var('tenios_interval_minutes') %}
{%- set counts = tenios_call_kpi_columns()['counts'] %}
{%- set measures = tenios_call_kpi_columns()['measures'] %}

with calls as (

    select * from {{ ref('int_tenios__inbound_calls') }}

),

days as (

    select distinct account, start_date_local from calls

),

numbers as (

    select distinct account, service_number from calls

),

minutes_of_day as (

    {% for start in range(0, 1440, minutes) -%}
    select {{ start }} as minute_of_day {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

spine as (

    select
        numbers.account,
        numbers.service_number,
        days.start_date_local as interval_date_local,
        {{ dbt.dateadd(
            'minute', 'minutes_of_day.minute_of_day',
            'cast(days.start_date_local as ' ~ dbt.type_timestamp() ~ ')') }} as interval_start_local
    from numbers
    inner join days on days.account = numbers.account
    cross join minutes_of_day

),

kpis as (

    select * from (
        {{ tenios_call_kpis(ref('int_tenios__inbound_calls'), ['account', 'service_number', 'interval_start_local']) | indent(8) }}
    ) as grouped

)

select
    spine.account,
    spine.service_number,
    spine.interval_date_local,
    spine.interval_start_local,
    {{ minutes }} as interval_minutes,
    {{ tenios_whole_period_columns('day', 'spine.account', 'spine.interval_date_local', 1, 'day') }},
    {{ tenios_whole_period_columns('interval', 'spine.account', 'spine.interval_start_local', minutes, 'minute') }},
    {%- for column in counts %}
    coalesce(kpis.{{ column }}, 0) as {{ column }},
    {%- endfor %}
    {%- for column in measures %}
    kpis.{{ column }}{% if not loop.last %},{% endif %}
    {%- endfor %}
from spine
left join {{ ref('int_tenios__extracted_spans') }} as spans on spans.account = spine.account
left join kpis
    on kpis.account = spine.account
    and kpis.interval_start_local = spine.interval_start_local
    and (kpis.service_number = spine.service_number
         or (kpis.service_number is null and spine.service_number is null))
