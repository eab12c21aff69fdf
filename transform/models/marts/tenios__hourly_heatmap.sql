-- Local weekday x hour over the whole history: when calls come and when they are missed.
{{ tenios_call_kpis(ref('tenios__calls'), ['start_weekday_local', 'start_hour_local']) }}
