-- One row per call of every account, as the portal shows it: an inbound leg and the legs
-- forwarded from it. The outcome rules are written out in the model's documentation
-- (tenios__outcome). Incremental: a run rebuilds, from all their legs, the calls that
-- have a leg rebuilt since its last run (macro tenios_changed_rows).
{{ tenios_incremental_config(['account', 'call_id']) }}
{%- set short_abandon = var('tenios_short_abandon_seconds') %}
{%- set ner_counts_caller_hangup = var('tenios_ner_counts_caller_hangup') %}
{%- if ner_counts_caller_hangup not in [true, false] %}
  {{ exceptions.raise_compiler_error(
      "tenios_ner_counts_caller_hangup must be true or false, not " ~ ner_counts_caller_hangup) }}
{%- endif %}

with legs as (

    {{ tenios_changed_rows(ref('tenios__legs'), ['account', 'call_id']) | indent(4) }}

),

per_call as (

    select
        account,
        call_id,
        count(*) as leg_count,
        min(started_at) as first_leg_started_at,
        max(ended_at) as last_leg_ended_at,
        {{ tenios_money_sum('cost') }} as total_cost,
        max({{ tenios_flag('is_answered') }}) as any_leg_answered,
        max({{ tenios_flag('routing_status is not null') }}) as has_routing_problem,
        max({{ tenios_flag('billing_status is not null') }}) as has_billing_problem
    from legs
    group by account, call_id

),

roots as (

    -- The leg that started the call: its id is the call's id.
    select * from legs where leg_id = call_id

),

forwards as (

    select
        legs.*,
        row_number() over (partition by account, call_id order by started_at, leg_id)
            as attempt_number,
        count(*) over (partition by account, call_id) as attempt_count
    from legs
    where leg_role = 'forward' and leg_id <> call_id

),

forward_summary as (

    select
        account,
        call_id,
        count(*) as forward_attempts,
        min(started_at) as first_forward_started_at,
        sum({{ tenios_flag('is_answered') }}) as forwards_answered,
        sum({{ tenios_flag("hangup_cause = 'USER_BUSY'") }}) as forwards_busy,
        max(case when attempt_number = attempt_count then hangup_cause end) as last_forward_hangup_cause,
        max(case when attempt_number = attempt_count then hangup_category end)
            as last_forward_hangup_category,
        max(case when attempt_number = attempt_count then ner_class end) as last_forward_ner_class
    from forwards
    group by account, call_id

),

answering as (

    -- The first forwarded leg that was answered.
    select *
    from (
        select
            forwards.*,
            row_number() over (partition by account, call_id order by answered_at, leg_id)
                as answer_rank
        from forwards
        where is_answered
    ) answered_forwards
    where answer_rank = 1

),

assembled as (

    select
        per_call.account,
        per_call.call_id,
        coalesce(roots.leg_role, 'incomplete') as call_kind,
        roots.call_type as root_call_type,
        case when roots.leg_role = 'inbound' then roots.destination_number end as service_number,
        roots.caller_number,
        roots.source_type as caller_source_type,
        coalesce(roots.started_at, per_call.first_leg_started_at) as started_at,
        per_call.last_leg_ended_at as ended_at,
        per_call.leg_count,
        coalesce(forward_summary.forward_attempts, 0) as forward_attempts,
        coalesce(forward_summary.forwards_busy, 0) as forwards_busy,
        answering.leg_id as answering_leg_id,
        answering.call_type as answering_call_type,
        answering.destination_number as answering_number,
        answering.attempt_number as answering_attempt,
        answering.answered_at as agent_answered_at,
        answering.talk_seconds as agent_talk_seconds,
        answering.ring_seconds as agent_ring_seconds,
        forward_summary.first_forward_started_at,
        roots.answered_at as root_answered_at,
        roots.ended_at as root_ended_at,
        roots.talk_seconds as root_talk_seconds,
        roots.is_answered as root_is_answered,
        roots.hangup_cause as root_hangup_cause,
        roots.hangup_category as root_hangup_category,
        roots.ner_class as root_ner_class,
        forward_summary.last_forward_hangup_cause,
        forward_summary.last_forward_hangup_category,
        forward_summary.last_forward_ner_class,
        per_call.any_leg_answered = 1 as any_leg_answered,
        roots.routing_status,
        roots.billing_status,
        per_call.has_routing_problem = 1 as has_routing_problem,
        per_call.has_billing_problem = 1 as has_billing_problem,
        per_call.total_cost
    from per_call
    left join roots
        on roots.account = per_call.account and roots.call_id = per_call.call_id
    left join forward_summary
        on forward_summary.account = per_call.account and forward_summary.call_id = per_call.call_id
    left join answering
        on answering.account = per_call.account and answering.call_id = per_call.call_id

),

classified as (

    select
        assembled.*,
        {{ tenios_seconds_between('started_at', 'coalesce(agent_answered_at, root_ended_at, ended_at)') }}
            as seconds_until_answer_or_end,
        case
            when call_kind <> 'inbound' then
                case when root_is_answered then 'answered' else 'failed' end
            when answering_leg_id is not null then 'answered'
            when forward_attempts = 0 and root_is_answered then 'announcement'
            when routing_status is not null then 'failed'
            when root_hangup_category = 'caller_cancelled'
                or last_forward_hangup_category = 'caller_cancelled'
                then case
                    when {{ tenios_seconds_between('started_at', 'root_ended_at') }} < {{ short_abandon }}
                        then 'short_abandon'
                    else 'abandoned'
                end
            when root_hangup_category = 'busy' or last_forward_hangup_category = 'busy' then 'busy'
            when root_hangup_category = 'no_answer' or last_forward_hangup_category = 'no_answer'
                then 'no_answer'
            when not root_is_answered and root_hangup_category = 'normal'
                then case
                    when {{ tenios_seconds_between('started_at', 'root_ended_at') }} < {{ short_abandon }}
                        then 'short_abandon'
                    else 'abandoned'
                end
            else 'failed'
        end as outcome,
        -- ITU-T E.425: answered, or ended by the called side's busy, no answer or
        -- rejection (the decisive leg: the last one forwarded, else the inbound leg).
        case
            when any_leg_answered then 'answer'
            when routing_status is not null then 'failure'
            else coalesce(last_forward_ner_class, root_ner_class, 'failure')
        end as ner_class,
        -- The caller hung up while it rang (ORIGINATOR_CANCEL on the inbound or the last
        -- forwarded leg, unanswered): the seed classes it with ring-no-answer.
        not any_leg_answered and routing_status is null
            and (root_hangup_category = 'caller_cancelled'
                 or last_forward_hangup_category = 'caller_cancelled')
            as is_caller_hangup_while_ringing
    from assembled

)

select
    account,
    call_id,
    call_kind,
    root_call_type,
    service_number,
    caller_number,
    caller_source_type,
    started_at,
    ended_at,
    {{ tenios_utc_to_local('started_at') }} as started_at_local,
    cast({{ tenios_utc_to_local('started_at') }} as date) as start_date_local,
    {{ tenios_hour(tenios_utc_to_local('started_at')) }} as start_hour_local,
    {{ tenios_iso_weekday(tenios_utc_to_local('started_at')) }} as start_weekday_local,
    leg_count,
    forward_attempts,
    forwards_busy,
    answering_leg_id,
    answering_call_type,
    answering_number,
    answering_attempt,
    outcome,
    any_leg_answered as is_answered,
    outcome = 'answered' and call_kind = 'inbound' as is_answered_by_person,
    outcome in ('abandoned', 'short_abandon') as is_abandoned,
    ner_class,
    is_caller_hangup_while_ringing,
    -- NER as the centre counts it: a caller's hang-up while it rang is effective or not
    -- as tenios_ner_counts_caller_hangup says (default: effective).
    ner_class in ('answer', 'user_busy', 'no_answer', 'terminal_rejection')
        {%- if not ner_counts_caller_hangup %}
        and not is_caller_hangup_while_ringing
        {%- endif %}
        as is_ner_effective,
    -- ITU-T E.425 strictly: ring-no-answer is effective only where the destination rang,
    -- which the CDRs show only where a forwarded leg exists.
    ner_class in ('answer', 'user_busy', 'no_answer', 'terminal_rejection')
        and (not is_caller_hangup_while_ringing or forward_attempts > 0)
        as is_ner_effective_strict,
    case
        when outcome = 'answered' and call_kind = 'inbound'
            then {{ tenios_seconds_between('started_at', 'agent_answered_at') }}
    end as wait_seconds,
    first_forward_started_at as queue_entered_at,
    case
        when outcome = 'answered' and call_kind = 'inbound'
            then {{ tenios_seconds_between('first_forward_started_at', 'agent_answered_at') }}
    end as queue_wait_seconds,
    seconds_until_answer_or_end,
    cast(case
        when outcome = 'answered' and call_kind = 'inbound' then agent_ring_seconds
    end as decimal(38, 3)) as ring_seconds,
    cast(case
        when outcome = 'answered' and call_kind = 'inbound' then agent_talk_seconds
    end as decimal(38, 3)) as talk_seconds,
    total_cost,
    root_hangup_cause,
    last_forward_hangup_cause,
    routing_status,
    billing_status,
    has_routing_problem,
    has_billing_problem,
    {{ tenios_built_at() }} as built_at
from classified
