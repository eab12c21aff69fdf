-- One row per copy of a leg the loader wrote, of every account, typed. Which copy is the
-- newest is decided in tenios__legs: kept apart, so that a filter on started_at reaches
-- the source tables (incremental runs read only the recent legs). Instants become the
-- warehouse's zone-aware type (macro tenios_instant): the loaders write naive UTC. The
-- caller's number and name are null where a stream map dropped them (personal data).
{%- set loaded_at = var('tenios_loaded_at_column') %}
{#- (source column, type, name): the stream's fields, typed and renamed. #}
{%- set fields = [
    ('uuid', 'string', 'leg_id'),
    ('coalesce(main_leg_uuid, uuid)', 'string', 'call_id'),
    ('main_leg_uuid', 'string', 'main_leg_id'),
    ('bleg_uuid', 'string', 'bridged_leg_id'),
    ('call_type', 'string', 'call_type'),
    ('start_stamp', 'instant', 'started_at'),
    ('answer_stamp', 'instant', 'answered_at'),
    ('end_stamp', 'instant', 'ended_at'),
    ('duration', 'bigint', 'duration_seconds'),
    ('billusec', 'bigint', 'billed_microseconds'),
    ('prepaid', 'boolean', 'is_prepaid'),
    ('hangup_cause', 'string', 'hangup_cause'),
    ('callerid_number', 'personal', 'caller_number'),
    ('callerid_name', 'personal', 'caller_name'),
    ('destination_number', 'string', 'destination_number'),
    ('source_type', 'string', 'source_type'),
    ('routing_status', 'string', 'routing_status'),
    ('billing_status', 'string', 'billing_status'),
] %}
{%- set types = {
    'string': dbt.type_string(), 'bigint': dbt.type_bigint(), 'boolean': dbt.type_boolean(),
} %}
{%- set columns = [] %}
{%- for column, type, name in fields %}
  {%- if type == 'instant' %}
    {%- do columns.append(tenios_instant(column) ~ ' as ' ~ name) %}
  {%- elif type == 'personal' %}
    {#- Personal data a stream map may hash (kept: a string) or drop (then null). #}
    {%- do columns.append({
        'expression': 'cast(' ~ column ~ ' as ' ~ types['string'] ~ ') as ' ~ name,
        'needs': column,
        'otherwise': 'cast(null as ' ~ types['string'] ~ ') as ' ~ name,
    }) %}
  {%- else %}
    {%- do columns.append('cast(' ~ column ~ ' as ' ~ types[type] ~ ') as ' ~ name) %}
  {%- endif %}
{%- endfor %}
{%- do columns.append(tenios_exact_decimal('cost') ~ ' as cost') %}
{%- do columns.append(
    (tenios_instant(loaded_at) if loaded_at else 'cast(null as ' ~ tenios_type_instant() ~ ')')
    ~ ' as loaded_at') %}

with unioned as (

    {{ tenios_union_source('cdrs', columns) }}

)

select
    unioned.*,
    case
        when call_type in ('INBOUND', 'WEBRTCINBOUND') then 'inbound'
        when call_type in ('FORWARD', 'SIPFORWARD_USER', 'SIPFORWARD_PRFL') then 'forward'
        when call_type = 'FAXOUT' then 'fax'
        else 'other'
    end as leg_role
from unioned
