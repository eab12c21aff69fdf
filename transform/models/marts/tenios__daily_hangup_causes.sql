-- Per account, local day, leg role and hangup cause: how legs ended, with the cause's
-- category and NER class (seed tenios__hangup_causes), to spot failing routes; each day
-- says whether it was extracted whole.
-- Incremental: a run rebuilds the (account, local day) rows whose legs were rebuilt,
-- and the days not yet extracted whole.
{{ tenios_incremental_config(['account', 'start_date_local']) }}

with legs as (

    {{ tenios_changed_rows(ref('tenios__legs'), ['account', 'start_date_local'], unsettled='not is_whole_day') | indent(4) }}

),

causes as (

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
    from legs
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
    legs_cost,
    {{ tenios_built_at() }} as built_at
from causes
left join {{ ref('int_tenios__extracted_spans') }} as spans on spans.account = causes.account
