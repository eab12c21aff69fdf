-- Per account and local month: tenios__spend's figures, summed (what the month's invoice
-- bills, to the last decimal of `cost`).
{{ tenios_spend(ref('tenios__spend'), [
    'account', 'start_month_local', 'spend_category', 'call_type', 'service_number',
    'destination_country_code', 'destination_country', 'destination_line_type',
], from_daily=true) }}
