{#
  Q.850 / FreeSWITCH hangup causes grouped by what they say about a call. Causes not
  listed are 'failure' (network and number problems).
#}
{% macro tenios_hangup_category(column) -%}
  case
    when {{ column }} is null then null
    -- LOSE_RACE: another destination rung at the same time answered first.
    when {{ column }} in ('NORMAL_CLEARING', 'LOSE_RACE') then 'normal'
    when {{ column }} = 'ORIGINATOR_CANCEL' then 'caller_cancelled'
    when {{ column }} in ('USER_BUSY', 'NORMAL_CIRCUIT_CONGESTION', 'SWITCH_CONGESTION') then 'busy'
    when {{ column }} in ('NO_ANSWER', 'NO_USER_RESPONSE', 'ALLOTTED_TIMEOUT',
                          'PROGRESS_TIMEOUT', 'RECOVERY_ON_TIMER_EXPIRE')
      then 'no_answer'
    when {{ column }} in ('CALL_REJECTED', 'USER_NOT_REGISTERED', 'SUBSCRIBER_ABSENT')
      then 'rejected'
    else 'failure'
  end
{%- endmacro %}
