-- Forwarded legs as attempts of their call: which destination was tried, in what order,
-- and how it ended. Incremental: a run renumbers the attempts of the calls with a leg
-- rebuilt since (macro tenios_changed_rows).
{{ tenios_incremental_config(['account', 'leg_id'], [['account', 'start_date_local']]) }}

with legs as (

    {{ tenios_changed_rows(ref('tenios__legs'), ['account', 'call_id']) | indent(4) }}

)

select
    legs.account,
    legs.leg_id,
    legs.call_id,
    legs.call_type,
    legs.destination_number,
    row_number() over (
        partition by legs.account, legs.call_id order by legs.started_at, legs.leg_id
    ) as attempt_number,
    legs.started_at,
    legs.start_date_local,
    legs.is_answered,
    legs.hangup_cause,
    legs.hangup_category,
    legs.ner_class,
    legs.ring_seconds,
    legs.talk_seconds,
    legs.cost,
    {{ tenios_built_at() }} as built_at
from legs
where legs.leg_role = 'forward' and legs.leg_id <> legs.call_id
