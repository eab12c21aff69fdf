-- Per account, local weekday x hour over the whole history: when calls come and when
-- they are missed. A view: every new call changes a cell's figures over all history
-- (its percentile cannot be added up), so it is computed when read, not at each build.
{{ config(materialized='view') }}
{{ tenios_call_kpis(ref('int_tenios__inbound_calls'), ['account', 'start_weekday_local', 'start_hour_local']) }}
