-- Per account, local day (of the leg's start) and answering destination (SIP user,
-- SIP trunk or forwarding number): the calls offered to it, answered, missed (it rang
-- and nobody answered there), talk time, ring time before an answer, and per seizure
-- the ASR (ITU-T E.411) and NER (ITU-T E.425). Incremental: a run rebuilds the
-- (account, local day) rows whose attempts were rebuilt, and the days not yet
-- extracted whole.
{{ tenios_incremental_config(['account', 'start_date_local']) }}

with attempts as (

    {{ tenios_changed_rows(ref('int_tenios__forward_attempts'), ['account', 'start_date_local'], unsettled='not is_whole_day') | indent(4) }}

),

per_destination as (

    select
        account,
        start_date_local,
        destination_number,
        case
            when min(call_type) = max(call_type) then
                case min(call_type)
                    when 'SIPFORWARD_USER' then 'sip_user'
                    when 'SIPFORWARD_PRFL' then 'sip_trunk'
                    else 'number'
                end
            else 'mixed'
        end as destination_kind,
        count(*) as seizures,
        count(distinct call_id) as calls_offered,
        count(distinct case when is_answered then call_id end) as calls_answered,
        count(distinct case
            when not is_answered and hangup_category in ('no_answer', 'caller_cancelled')
                then call_id
        end) as calls_missed,
        sum({{ tenios_flag('is_answered') }}) as answered,
        sum({{ tenios_flag("ner_class in ('answer', 'user_busy', 'no_answer', 'terminal_rejection')") }})
            as ner_effective,
        sum({{ tenios_flag("hangup_category = 'busy'") }}) as busy,
        sum({{ tenios_flag("hangup_category = 'no_answer'") }}) as no_answer,
        sum({{ tenios_flag("hangup_category = 'caller_cancelled'") }}) as caller_cancelled,
        sum({{ tenios_flag("hangup_category = 'rejected'") }}) as rejected,
        sum({{ tenios_flag("not is_answered and hangup_category = 'failure'") }}) as failed,
        sum({{ tenios_flag('attempt_number = 1') }}) as first_attempts,
        avg(case when is_answered then ring_seconds end) as ring_raw,
        sum(talk_seconds) as talk_raw,
        {{ tenios_money_sum('cost') }} as forward_legs_cost
    from attempts
    group by account, start_date_local, destination_number

)

select
    per_destination.account,
    per_destination.start_date_local,
    {{ tenios_whole_period_columns('day', 'per_destination.account', 'per_destination.start_date_local', 1, 'day') }},
    destination_number,
    destination_kind,
    seizures,
    calls_offered,
    calls_answered,
    calls_missed,
    answered,
    busy,
    no_answer,
    caller_cancelled,
    rejected,
    failed,
    first_attempts,
    {{ tenios_ratio('answered', 'seizures') }} as answer_seizure_ratio,
    {{ tenios_ratio('ner_effective', 'seizures') }} as ner,
    {{ tenios_round('ring_raw', 1) }} as avg_ring_seconds_answered,
    {{ tenios_round('talk_raw', 1) }} as talk_seconds_total,
    forward_legs_cost,
    {{ tenios_built_at() }} as built_at
from per_destination
left join {{ ref('int_tenios__extracted_spans') }} as spans on spans.account = per_destination.account
