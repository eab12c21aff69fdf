-- Per account and local day, all service numbers together: the KPIs of tenios__daily_kpis.
{{ tenios_call_kpis(ref('int_tenios__inbound_calls'), ['account', 'start_date_local']) }}
