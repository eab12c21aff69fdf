{#
  The spend measures of tenios__spend and tenios__monthly_spend over `legs` (rows of
  tenios__legs, or of tenios__spend when `from_daily`), grouped by `group_by`: every
  leg's exact cost, whatever its type and however it ended.
#}
{% macro tenios_spend(legs, group_by, from_daily=false) -%}
{%- set keys = group_by | join(', ') %}
with grouped as (

    select
        {{ keys }},
        {% if from_daily -%}
        sum(legs) as legs,
        sum(legs_answered) as legs_answered,
        sum(legs_failed) as legs_failed,
        sum(billed_seconds) as billed_seconds,
        sum(answered_billed_seconds) as answered_billed_seconds,
        {{ tenios_money_sum('spend_all_legs') }} as spend_all_legs,
        {{ tenios_money_sum('spend_failed_legs') }} as spend_failed_legs
        {%- else -%}
        count(*) as legs,
        sum({{ tenios_flag('is_answered') }}) as legs_answered,
        sum({{ tenios_flag('is_failed') }}) as legs_failed,
        cast(sum(billed_microseconds) as decimal(38, 6)) / 1000000 as billed_seconds,
        cast(sum(case when is_answered then billed_microseconds else 0 end) as decimal(38, 6))
            / 1000000 as answered_billed_seconds,
        {{ tenios_money_sum('cost') }} as spend_all_legs,
        {{ tenios_money_sum('case when is_failed then cost else 0 end') }} as spend_failed_legs
        {%- endif %}
    from {{ legs }}
    group by {{ keys }}

)

select
    {%- for key in group_by %}
    grouped.{{ key }},
    {%- endfor %}
    {%- if 'start_date_local' in group_by %}
    {{ tenios_whole_period_columns('day', 'grouped.account', 'grouped.start_date_local', 1, 'day') }},
    {%- elif 'start_month_local' in group_by %}
    {{ tenios_whole_period_columns('month', 'grouped.account', 'grouped.start_month_local', 1, 'month') }},
    {%- endif %}
    legs,
    legs_answered,
    legs_failed,
    {{ tenios_round('billed_seconds', 3) }} as billed_seconds,
    {{ tenios_round('answered_billed_seconds', 3) }} as answered_billed_seconds,
    spend_all_legs,
    spend_failed_legs,
    {{ tenios_round('spend_all_legs * 60 / nullif(answered_billed_seconds, 0)', 6) }}
        as spend_per_answered_minute
from grouped
left join {{ ref('int_tenios__extracted_spans') }} as spans on spans.account = grouped.account
{%- endmacro %}
