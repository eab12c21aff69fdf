-- Per account, local day and service number: the figures a phone line is run by.
-- Definitions and sources: the model's documentation (doc block tenios__kpi_definitions).
-- Incremental: a run rebuilds the (account, local day) rows whose calls were rebuilt,
-- and the days not yet extracted whole.
{{ tenios_incremental_config(['account', 'start_date_local']) }}
{%- set calls = tenios_changed_rows(ref('int_tenios__inbound_calls'), ['account', 'start_date_local'], unsettled='not is_whole_day') %}

select
    kpis.*,
    {{ tenios_built_at() }} as built_at
from (
    {{ tenios_call_kpis('(' ~ calls ~ ') as inbound', ['account', 'start_date_local', 'service_number']) | indent(4) }}
) as kpis
