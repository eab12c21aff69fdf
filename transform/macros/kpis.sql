{#
  The KPIs over the inbound calls of int_tenios__inbound_calls, grouped by `group_by`.
  Used by tenios__daily_kpis, tenios__daily_totals, tenios__hourly_heatmap and
  tenios__interval_kpis, so all follow the same definitions (docs:
  tenios__kpi_definitions).

  Two families: the telephony ratios over every call offered (ASR, ITU-T E.411; NER,
  ITU-T E.425), and the contact-centre figures over the calls offered to a person
  within opening hours (service level, abandonment, speed of answer, handle time).
#}
{% macro tenios_call_kpis(calls, group_by) -%}
{%- set sl = var('tenios_service_level_seconds') %}
{%- set acw = var('tenios_after_call_work_seconds') %}
{%- set keys = group_by | join(', ') %}
{%- set in_hours = 'is_within_opening_hours' %}
{%- set to_person = in_hours ~ " and outcome in ('answered', 'abandoned', 'busy', 'no_answer')" %}
{%- set handled = in_hours ~ ' and is_answered_by_person' %}
with calls as (

    select * from {{ calls }}

),

grouped as (

    select
        {{ keys }},
        count(*) as calls_offered,
        sum({{ tenios_flag('is_answered') }}) as calls_answered,
        sum({{ tenios_flag('is_ner_effective') }}) as calls_ner_effective,
        sum({{ tenios_flag('is_answered_by_person') }}) as calls_answered_by_person,
        sum({{ tenios_flag("outcome = 'announcement'") }}) as calls_announcement,
        sum({{ tenios_flag("outcome = 'abandoned'") }}) as calls_abandoned,
        sum({{ tenios_flag("outcome = 'short_abandon'") }}) as calls_short_abandoned,
        sum({{ tenios_flag("outcome = 'busy'") }}) as calls_busy,
        sum({{ tenios_flag("outcome = 'no_answer'") }}) as calls_no_answer,
        sum({{ tenios_flag("outcome = 'failed'") }}) as calls_failed,
        sum({{ tenios_flag('not ' ~ in_hours) }}) as calls_closed,
        sum({{ tenios_flag(to_person) }}) as calls_offered_to_person,
        sum({{ tenios_flag(in_hours ~ " and outcome = 'abandoned'") }}) as calls_abandoned_in_hours,
        sum({{ tenios_flag(handled ~ ' and wait_seconds <= ' ~ sl) }}) as calls_answered_within_sl,
        sum(case when is_answered_by_person then talk_seconds end) as talk_seconds_total,
        avg(case when is_answered_by_person then talk_seconds end) as acd_raw,
        avg(case when {{ handled }} then wait_seconds end) as asa_raw,
        {{ tenios_percentile('case when ' ~ handled ~ ' then wait_seconds end', 0.9) }} as p90_wait_raw,
        avg(case when {{ handled }} then talk_seconds + {{ acw }} end) as aht_raw,
        {{ tenios_money_sum('total_cost') }} as calls_cost_total
    from calls
    group by {{ keys }}

)

select
    {{ keys }},
    calls_offered,
    calls_answered,
    calls_ner_effective,
    calls_answered_by_person,
    calls_announcement,
    calls_abandoned,
    calls_short_abandoned,
    calls_busy,
    calls_no_answer,
    calls_failed,
    calls_closed,
    calls_offered_to_person,
    calls_abandoned_in_hours,
    calls_answered_within_sl,
    {{ tenios_ratio('calls_answered', 'calls_offered') }} as asr,
    {{ tenios_ratio('calls_ner_effective', 'calls_offered') }} as ner,
    {{ tenios_ratio('calls_answered_by_person', 'calls_offered') }} as person_answer_rate,
    {{ tenios_ratio('calls_answered_within_sl', 'calls_offered_to_person') }} as service_level,
    {{ tenios_ratio('calls_abandoned_in_hours', 'calls_offered_to_person') }} as abandon_rate,
    {{ tenios_round('asa_raw', 1) }} as asa_seconds,
    {{ tenios_round('p90_wait_raw', 1) }} as p90_wait_seconds,
    {{ tenios_round('aht_raw', 1) }} as aht_seconds,
    {{ tenios_round('acd_raw', 1) }} as acd_seconds,
    {{ tenios_round('talk_seconds_total', 1) }} as talk_seconds_total,
    calls_cost_total,
    {{ tenios_round('calls_cost_total / nullif(calls_offered, 0)', 6) }} as cost_per_call
from grouped
{%- endmacro %}
