-- Per account, local weekday x hour over the whole history: when calls come and when
-- they are missed.
{{ tenios_call_kpis(ref('int_tenios__inbound_calls'), ['account', 'start_weekday_local', 'start_hour_local']) }}
