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
        {{ tenios_money_sum('cost_total') }} as cost_total,
        {{ tenios_money_sum('cost_failed') }} as cost_failed
        {%- else -%}
        count(*) as legs,
        sum({{ tenios_flag('is_answered') }}) as legs_answered,
        sum({{ tenios_flag('is_failed') }}) as legs_failed,
        cast(sum(billed_microseconds) as decimal(38, 6)) / 1000000 as billed_seconds,
        cast(sum(case when is_answered then billed_microseconds else 0 end) as decimal(38, 6))
            / 1000000 as answered_billed_seconds,
        {{ tenios_money_sum('cost') }} as cost_total,
        {{ tenios_money_sum('case when is_failed then cost else 0 end') }} as cost_failed
        {%- endif %}
    from {{ legs }}
    group by {{ keys }}

)

select
    {{ keys }},
    legs,
    legs_answered,
    legs_failed,
    {{ tenios_round('billed_seconds', 3) }} as billed_seconds,
    {{ tenios_round('answered_billed_seconds', 3) }} as answered_billed_seconds,
    cost_total,
    cost_failed,
    {{ tenios_round('cost_total * 60 / nullif(answered_billed_seconds, 0)', 6) }}
        as cost_per_answered_minute
from grouped
{%- endmacro %}
