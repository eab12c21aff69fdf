-- Per local day, all service numbers together: the same KPIs as tenios__daily_kpis.
{{ tenios_call_kpis(ref('tenios__calls'), ['start_date_local']) }}
