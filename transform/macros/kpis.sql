{#
  The KPIs over the inbound calls of int_tenios__inbound_calls, grouped by `group_by`.
  Used by tenios__daily_kpis, tenios__daily_totals, tenios__hourly_heatmap and
  tenios__interval_kpis, so all follow the same definitions (docs:
  tenios__kpi_definitions).

  Two families: the telephony ratios over every call offered (ASR, ITU-T E.411; NER,
  ITU-T E.425), and the contact-centre figures over the calls offered to a person
  within opening hours (service level, abandonment, lost calls, speed of answer,
  handle time). The choices a centre makes are vars: tenios_service_level_seconds and
  tenios_service_level_base, tenios_short_abandon_seconds (in tenios__calls),
  tenios_ner_counts_caller_hangup (ner; ner_strict follows E.425 whatever it says) and
  tenios_after_call_work_seconds. tenios_call_kpi_columns() lists the columns, in order.
#}
{% macro tenios_call_kpi_columns() -%}
  {{ return({
      'counts': [
          'calls_offered', 'calls_answered', 'calls_ner_effective', 'calls_ner_effective_strict',
          'calls_caller_hangup_while_ringing', 'calls_answered_by_person', 'calls_announcement',
          'calls_abandoned', 'calls_short_abandoned', 'calls_busy', 'calls_no_answer',
          'calls_failed', 'calls_closed', 'calls_on_holidays', 'calls_offered_to_person',
          'calls_answered_in_hours', 'calls_abandoned_in_hours', 'calls_lost',
          'calls_service_level_base', 'calls_answered_within_sl',
          'calls_answered_within_sl_from_queue', 'calls_with_caller_number',
          'calls_repeat_caller',
      ],
      'measures': [
          'asr', 'ner', 'ner_strict', 'person_answer_rate', 'answer_rate_in_hours',
          'service_level', 'service_level_from_queue', 'abandon_rate', 'lost_call_rate',
          'repeat_caller_rate', 'asa_seconds', 'asa_from_queue_seconds', 'p90_wait_seconds',
          'aht_seconds', 'aht_ring_seconds', 'aht_talk_seconds', 'after_call_work_seconds',
          'acd_seconds', 'talk_seconds_total', 'inbound_calls_cost', 'inbound_cost_per_call',
      ],
  }) }}
{%- endmacro %}


{% macro tenios_call_kpis(calls, group_by) -%}
{%- set sl = var('tenios_service_level_seconds') %}
{%- set acw = var('tenios_after_call_work_seconds') %}
{%- set keys = group_by | join(', ') %}
{%- set in_hours = 'is_within_opening_hours' %}
{%- set to_person = in_hours ~ " and outcome in ('answered', 'abandoned', 'busy', 'no_answer')" %}
{%- set handled = in_hours ~ ' and is_answered_by_person' %}
{%- set bases = {
    'answered_and_abandoned': in_hours ~ " and outcome in ('answered', 'abandoned')",
    'answered': handled,
    'offered': to_person,
} %}
{%- set base = var('tenios_service_level_base') %}
{%- if base not in bases %}
  {{ exceptions.raise_compiler_error(
      "tenios_service_level_base must be one of " ~ (bases.keys() | sort | join(', ')) ~ ", not " ~ base) }}
{%- endif %}
{%- if acw is not none and (acw is string or acw < 0) %}
  {{ exceptions.raise_compiler_error(
      "tenios_after_call_work_seconds must be a number of seconds or null, not " ~ acw) }}
{%- endif %}
with calls as (

    -- A repeat caller called the same number earlier the same local day (null without
    -- a caller number: anonymous, or removed by a stream map). Counted here, over every
    -- call of the days the mart builds, not per call.
    select
        source_.*,
        case
            when caller_number is not null and caller_number <> 'anonymous'
                then row_number() over (
                    partition by account, service_number, caller_number, start_date_local
                    order by started_at, call_id) > 1
        end as is_repeat_caller
    from (select * from {{ calls }}) as source_

),

grouped as (

    select
        {{ keys }},
        count(*) as calls_offered,
        sum({{ tenios_flag('is_answered') }}) as calls_answered,
        sum({{ tenios_flag('is_ner_effective') }}) as calls_ner_effective,
        sum({{ tenios_flag('is_ner_effective_strict') }}) as calls_ner_effective_strict,
        sum({{ tenios_flag('is_caller_hangup_while_ringing') }}) as calls_caller_hangup_while_ringing,
        sum({{ tenios_flag('is_answered_by_person') }}) as calls_answered_by_person,
        sum({{ tenios_flag("outcome = 'announcement'") }}) as calls_announcement,
        sum({{ tenios_flag("outcome = 'abandoned'") }}) as calls_abandoned,
        sum({{ tenios_flag("outcome = 'short_abandon'") }}) as calls_short_abandoned,
        sum({{ tenios_flag("outcome = 'busy'") }}) as calls_busy,
        sum({{ tenios_flag("outcome = 'no_answer'") }}) as calls_no_answer,
        sum({{ tenios_flag("outcome = 'failed'") }}) as calls_failed,
        sum({{ tenios_flag('not ' ~ in_hours) }}) as calls_closed,
        sum({{ tenios_flag('is_holiday') }}) as calls_on_holidays,
        sum({{ tenios_flag(to_person) }}) as calls_offered_to_person,
        sum({{ tenios_flag(handled) }}) as calls_answered_in_hours,
        sum({{ tenios_flag(in_hours ~ " and outcome = 'abandoned'") }}) as calls_abandoned_in_hours,
        sum({{ tenios_flag(in_hours ~ " and outcome in ('abandoned', 'busy', 'no_answer')") }})
            as calls_lost,
        sum({{ tenios_flag(bases[base]) }}) as calls_service_level_base,
        sum({{ tenios_flag(handled ~ ' and wait_seconds <= ' ~ sl) }}) as calls_answered_within_sl,
        sum({{ tenios_flag(handled ~ ' and queue_wait_seconds <= ' ~ sl) }})
            as calls_answered_within_sl_from_queue,
        sum({{ tenios_flag('is_repeat_caller is not null') }}) as calls_with_caller_number,
        sum({{ tenios_flag('is_repeat_caller') }}) as calls_repeat_caller,
        sum(case when is_answered_by_person then talk_seconds end) as talk_seconds_total,
        avg(case when is_answered_by_person then talk_seconds end) as acd_raw,
        avg(case when {{ handled }} then wait_seconds end) as asa_raw,
        avg(case when {{ handled }} then queue_wait_seconds end) as asa_from_queue_raw,
        {{ tenios_percentile('case when ' ~ handled ~ ' then wait_seconds end', 0.9) }} as p90_wait_raw,
        avg(case when {{ handled }} then ring_seconds end) as aht_ring_raw,
        avg(case when {{ handled }} then talk_seconds end) as aht_talk_raw,
        avg(case when {{ handled }} then coalesce(ring_seconds, 0) + talk_seconds end) as aht_raw,
        {{ tenios_money_sum('total_cost') }} as inbound_calls_cost
    from calls
    group by {{ keys }}

)

select
    {%- for key in group_by %}
    grouped.{{ key }},
    {%- endfor %}
    {%- if 'start_date_local' in group_by %}
    {{ tenios_whole_period_columns('day', 'grouped.account', 'grouped.start_date_local', 1, 'day') }},
    {%- endif %}
    {%- for column in tenios_call_kpi_columns()['counts'] %}
    {{ column }},
    {%- endfor %}
    {{ tenios_ratio('calls_answered', 'calls_offered') }} as asr,
    {{ tenios_ratio('calls_ner_effective', 'calls_offered') }} as ner,
    {{ tenios_ratio('calls_ner_effective_strict', 'calls_offered') }} as ner_strict,
    {{ tenios_ratio('calls_answered_by_person', 'calls_offered') }} as person_answer_rate,
    {{ tenios_ratio('calls_answered_in_hours', 'calls_offered_to_person') }} as answer_rate_in_hours,
    {{ tenios_ratio('calls_answered_within_sl', 'calls_service_level_base') }} as service_level,
    {{ tenios_ratio('calls_answered_within_sl_from_queue', 'calls_service_level_base') }}
        as service_level_from_queue,
    {{ tenios_ratio('calls_abandoned_in_hours', 'calls_offered_to_person') }} as abandon_rate,
    {{ tenios_ratio('calls_lost', 'calls_offered_to_person') }} as lost_call_rate,
    {{ tenios_ratio('calls_repeat_caller', 'calls_with_caller_number') }} as repeat_caller_rate,
    {{ tenios_round('asa_raw', 1) }} as asa_seconds,
    {{ tenios_round('asa_from_queue_raw', 1) }} as asa_from_queue_seconds,
    {{ tenios_round('p90_wait_raw', 1) }} as p90_wait_seconds,
    {{ tenios_round('aht_raw' ~ ('' if acw is none else ' + ' ~ acw), 1) }} as aht_seconds,
    {{ tenios_round('aht_ring_raw', 1) }} as aht_ring_seconds,
    {{ tenios_round('aht_talk_raw', 1) }} as aht_talk_seconds,
    {%- if acw is none %}
    cast(null as decimal(38, 1)) as after_call_work_seconds,
    {%- else %}
    {{ tenios_round('case when calls_answered_in_hours > 0 then ' ~ acw ~ ' end', 1) }}
        as after_call_work_seconds,
    {%- endif %}
    {{ tenios_round('acd_raw', 1) }} as acd_seconds,
    {{ tenios_round('talk_seconds_total', 1) }} as talk_seconds_total,
    inbound_calls_cost,
    {{ tenios_round('inbound_calls_cost / nullif(calls_offered, 0)', 6) }} as inbound_cost_per_call
from grouped
{%- if 'start_date_local' in group_by %}
left join {{ ref('int_tenios__extracted_spans') }} as spans on spans.account = grouped.account
{%- endif %}
{%- endmacro %}
