{#
  Q.850 / FreeSWITCH hangup causes grouped by what they say about a call. Causes not
  listed are 'failure' (network and number problems).
#}
{% macro tenios_hangup_category(column) -%}
  case
    when {{ column }} is null then null
    when {{ column }} = 'NORMAL_CLEARING' then 'normal'
    when {{ column }} in ('ORIGINATOR_CANCEL', 'LOSE_RACE') then 'caller_cancelled'
    when {{ column }} in ('USER_BUSY', 'NORMAL_CIRCUIT_CONGESTION', 'SWITCH_CONGESTION') then 'busy'
    when {{ column }} in ('NO_ANSWER', 'NO_USER_RESPONSE', 'ALLOTTED_TIMEOUT',
                          'PROGRESS_TIMEOUT', 'RECOVERY_ON_TIMER_EXPIRE', 'MEDIA_TIMEOUT')
      then 'no_answer'
    when {{ column }} in ('CALL_REJECTED', 'USER_NOT_REGISTERED', 'SUBSCRIBER_ABSENT')
      then 'rejected'
    else 'failure'
  end
{%- endmacro %}
