-- Per account, local day and service number: the figures a phone line is run by.
-- Definitions and sources: the model's documentation (doc block tenios__kpi_definitions).
{{ tenios_call_kpis(ref('int_tenios__inbound_calls'), ['account', 'start_date_local', 'service_number']) }}
