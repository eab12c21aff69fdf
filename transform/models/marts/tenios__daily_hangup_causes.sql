-- Per local day, leg role and hangup cause: how legs ended, grouped into categories
-- (macro tenios_hangup_category), to spot failing routes and busy destinations.
select
    start_date_local,
    leg_role,
    hangup_category,
    hangup_cause,
    count(*) as legs,
    sum({{ tenios_flag('is_answered') }}) as legs_answered,
    {{ tenios_money_sum('cost') }} as cost_total
from {{ ref('stg_tenios__cdr_legs') }}
group by start_date_local, leg_role, hangup_category, hangup_cause
