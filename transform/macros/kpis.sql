{#
  The KPIs over inbound calls of `calls` (tenios__calls), grouped by `group_by`. Used by
  tenios__daily_kpis (day x service number) and tenios__daily_totals (day), so both
  follow the same definitions (docs: tenios__kpi_definitions).
#}
{% macro tenios_call_kpis(calls, group_by) -%}
{%- set sl = var('tenios_service_level_seconds') %}
{%- set keys = group_by | join(', ') %}
with calls as (

    select * from {{ calls }}
    where call_kind = 'inbound'

),

daily as (

    select
        {{ keys }},
        count(*) as calls_offered,
        sum({{ tenios_flag('is_answered') }}) as calls_answered,
        sum({{ tenios_flag("outcome = 'abandoned'") }}) as calls_abandoned,
        sum({{ tenios_flag("outcome = 'short_abandon'") }}) as calls_short_abandoned,
        sum({{ tenios_flag("outcome = 'busy'") }}) as calls_busy,
        sum({{ tenios_flag("outcome = 'no_answer'") }}) as calls_no_answer,
        sum({{ tenios_flag("outcome = 'failed'") }}) as calls_failed,
        sum({{ tenios_flag("outcome = 'announcement'") }}) as calls_announcement,
        sum({{ tenios_flag('is_answered and wait_seconds <= ' ~ sl) }}) as calls_answered_within_sl,
        sum(case when is_answered then talk_seconds end) as talk_seconds_total,
        avg(case when is_answered then talk_seconds end) as acd_raw,
        avg(case when is_answered then wait_seconds end) as avg_wait_raw,
        {{ tenios_percentile('case when is_answered then wait_seconds end', 0.9) }} as p90_wait_raw,
        {{ tenios_money_sum('total_cost') }} as cost_total
    from calls
    group by {{ keys }}

)

select
    {{ keys }},
    calls_offered,
    calls_answered,
    calls_abandoned,
    calls_short_abandoned,
    calls_busy,
    calls_no_answer,
    calls_failed,
    calls_announcement,
    calls_answered_within_sl,
    {{ tenios_ratio('calls_answered', 'calls_offered') }} as answer_rate,
    {{ tenios_ratio('calls_abandoned', 'calls_offered - calls_short_abandoned') }} as abandon_rate,
    {{ tenios_ratio('calls_answered_within_sl', 'calls_offered - calls_short_abandoned') }}
        as service_level,
    {{ tenios_round('talk_seconds_total', 1) }} as talk_seconds_total,
    {{ tenios_round('acd_raw', 1) }} as acd_seconds,
    {{ tenios_round('avg_wait_raw', 1) }} as avg_wait_seconds,
    {{ tenios_round('p90_wait_raw', 1) }} as p90_wait_seconds,
    cost_total,
    {{ tenios_round('cost_total / nullif(calls_offered, 0)', 6) }} as cost_per_call
from daily
{%- endmacro %}
