-- Forwarded legs as attempts of their call: which destination was tried, in what order,
-- and how it ended. Ephemeral: inlined into the models that use it.
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
    legs.cost
from {{ ref('tenios__legs') }} as legs
where legs.leg_role = 'forward' and legs.leg_id <> legs.call_id
