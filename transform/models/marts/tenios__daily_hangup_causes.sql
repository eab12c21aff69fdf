-- Per account, local day, leg role and hangup cause: how legs ended, with the cause's
-- category and NER class (seed tenios__hangup_causes), to spot failing routes.
-- Each day says whether it was extracted whole.
with causes as (

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

)

select
    causes.account,
    causes.start_date_local,
    {{ tenios_whole_period_columns('day', 'causes.account', 'causes.start_date_local', 1, 'day') }},
    leg_role,
    hangup_category,
    ner_class,
    hangup_cause,
    legs,
    legs_answered,
    legs_cost
from causes
left join {{ ref('int_tenios__extracted_spans') }} as spans on spans.account = causes.account
