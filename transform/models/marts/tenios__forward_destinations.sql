-- Per local day and forward destination: how often it was tried (seizures), how often it
-- answered (ASR, per seizure as ITU-T E.411 defines it), how long it rang.
with attempts as (

    select * from {{ ref('int_tenios__forward_attempts') }}

),

per_destination as (

    select
        start_date_local,
        destination_number,
        count(*) as seizures,
        sum({{ tenios_flag('is_answered') }}) as answered,
        sum({{ tenios_flag("hangup_category = 'busy'") }}) as busy,
        sum({{ tenios_flag("hangup_category = 'no_answer'") }}) as no_answer,
        sum({{ tenios_flag("hangup_category = 'caller_cancelled'") }}) as caller_cancelled,
        sum({{ tenios_flag('attempt_number = 1') }}) as first_attempts,
        avg(case when is_answered then ring_seconds end) as ring_raw,
        sum(talk_seconds) as talk_raw,
        {{ tenios_money_sum('cost') }} as cost_total
    from attempts
    group by start_date_local, destination_number

)

select
    start_date_local,
    destination_number,
    seizures,
    answered,
    busy,
    no_answer,
    caller_cancelled,
    first_attempts,
    {{ tenios_ratio('answered', 'seizures') }} as answer_seizure_ratio,
    {{ tenios_round('ring_raw', 1) }} as avg_ring_seconds_answered,
    {{ tenios_round('talk_raw', 1) }} as talk_seconds_total,
    cost_total
from per_destination
