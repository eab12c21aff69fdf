-- Per account and local month: tenios__spend's figures, summed (what the month's invoice
-- bills, to the last decimal of `cost`). Incremental: a run rebuilds the (account,
-- month) rows whose days were rebuilt, and the months not yet extracted whole.
{{ tenios_incremental_config(['account', 'start_month_local']) }}

with days as (

    {{ tenios_changed_rows(ref('tenios__spend'), ['account', 'start_month_local'], unsettled='not is_whole_month') | indent(4) }}

)

select
    spend.*,
    {{ tenios_built_at() }} as built_at
from (
    {{ tenios_spend('days', [
        'account', 'start_month_local', 'spend_category', 'call_type', 'service_number',
        'destination_country_code', 'destination_country', 'destination_line_type',
    ], from_daily=true) | indent(4) }}
) as spend
