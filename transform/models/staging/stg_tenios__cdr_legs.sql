-- One row per copy of a leg the loader wrote, of every account, typed. Which copy is the
-- newest is decided in tenios__legs: kept apart, so that a filter on started_at reaches
-- the source tables (incremental runs read only the recent legs).
{%- set loaded_at = var('tenios_loaded_at_column') %}
with unioned as (

    {{ tenios_union_source('cdrs', [
        'cast(uuid as ' ~ dbt.type_string() ~ ') as leg_id',
        'cast(coalesce(main_leg_uuid, uuid) as ' ~ dbt.type_string() ~ ') as call_id',
        'cast(main_leg_uuid as ' ~ dbt.type_string() ~ ') as main_leg_id',
        'cast(bleg_uuid as ' ~ dbt.type_string() ~ ') as bridged_leg_id',
        'cast(call_type as ' ~ dbt.type_string() ~ ') as call_type',
        'cast(start_stamp as ' ~ dbt.type_timestamp() ~ ') as started_at',
        'cast(answer_stamp as ' ~ dbt.type_timestamp() ~ ') as answered_at',
        'cast(end_stamp as ' ~ dbt.type_timestamp() ~ ') as ended_at',
        'cast(duration as ' ~ dbt.type_bigint() ~ ') as duration_seconds',
        'cast(billusec as ' ~ dbt.type_bigint() ~ ') as billed_microseconds',
        tenios_exact_decimal('cost') ~ ' as cost',
        'cast(prepaid as ' ~ dbt.type_boolean() ~ ') as is_prepaid',
        'cast(hangup_cause as ' ~ dbt.type_string() ~ ') as hangup_cause',
        'cast(callerid_number as ' ~ dbt.type_string() ~ ') as caller_number',
        'cast(callerid_name as ' ~ dbt.type_string() ~ ') as caller_name',
        'cast(destination_number as ' ~ dbt.type_string() ~ ') as destination_number',
        'cast(source_type as ' ~ dbt.type_string() ~ ') as source_type',
        'cast(routing_status as ' ~ dbt.type_string() ~ ') as routing_status',
        'cast(billing_status as ' ~ dbt.type_string() ~ ') as billing_status',
        (loaded_at ~ ' as loaded_at') if loaded_at else ('cast(null as ' ~ dbt.type_timestamp() ~ ') as loaded_at'),
    ]) }}

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
