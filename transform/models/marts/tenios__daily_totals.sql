-- Per account and local day, all service numbers together: the KPIs of tenios__daily_kpis.
-- Incremental: a run rebuilds the (account, local day) rows whose calls were rebuilt,
-- and the days not yet extracted whole.
{{ tenios_incremental_config(['account', 'start_date_local']) }}
{%- set calls = tenios_changed_rows(ref('int_tenios__inbound_calls'), ['account', 'start_date_local'], unsettled='not is_whole_day') %}

select
    kpis.*,
    {{ tenios_built_at() }} as built_at
from (
    {{ tenios_call_kpis('(' ~ calls ~ ') as inbound', ['account', 'start_date_local']) | indent(4) }}
) as kpis
