-- Per account, local day, leg role and hangup cause: how legs ended, with the cause's
-- category and NER class (seed tenios__hangup_causes), to spot failing routes.
select
    account,
    start_date_local,
    leg_role,
    hangup_category,
    ner_class,
    hangup_cause,
    count(*) as legs,
    sum({{ tenios_flag('is_answered') }}) as legs_answered,
    {{ tenios_money_sum('cost') }} as legs_cost
from {{ ref('tenios__legs') }}
group by account, start_date_local, leg_role, hangup_category, ner_class, hangup_cause
