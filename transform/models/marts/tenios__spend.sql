-- Per account and local day: what every leg cost (inbound, forwarded, outbound, fax,
-- failed), by spend category, call type, service number (of the leg's call) and, for
-- legs leaving the platform, destination country and line type. Sums to the invoice.
with legs as (

    select
        legs.*,
        calls.service_number
    from {{ ref('tenios__legs') }} as legs
    left join {{ ref('tenios__calls') }} as calls
        on calls.account = legs.account and calls.call_id = legs.call_id

)

select
    spend.*,
    cast({{ dbt.date_trunc('month', 'spend.start_date_local') }} as date) as start_month_local
from (
    {{ tenios_spend('legs', [
        'account', 'start_date_local', 'spend_category', 'call_type', 'service_number',
        'destination_country_code', 'destination_country', 'destination_line_type',
    ]) | indent(4) }}
) as spend
