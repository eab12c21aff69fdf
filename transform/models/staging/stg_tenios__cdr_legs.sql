-- One row per leg: the newest copy of each uuid, typed, with the leg's role and timings.
with source as (

    select * from {{ source('tenios', 'cdrs') }}

),

ranked as (

    select
        source.*,
        row_number() over (partition by uuid order by {{ tenios_newest_first() }}) as copy_rank,
        count(*) over (partition by uuid) as copies_loaded
    from source

),

typed as (

    select
        cast(uuid as {{ dbt.type_string() }}) as leg_id,
        cast(coalesce(main_leg_uuid, uuid) as {{ dbt.type_string() }}) as call_id,
        cast(main_leg_uuid as {{ dbt.type_string() }}) as main_leg_id,
        cast(bleg_uuid as {{ dbt.type_string() }}) as bridged_leg_id,
        cast(call_type as {{ dbt.type_string() }}) as call_type,
        case
            when call_type in ('INBOUND', 'WEBRTCINBOUND') then 'inbound'
            when call_type in ('FORWARD', 'SIPFORWARD_USER', 'SIPFORWARD_PRFL') then 'forward'
            when call_type = 'FAXOUT' then 'fax'
            else 'other'
        end as leg_role,
        cast(start_stamp as {{ dbt.type_timestamp() }}) as started_at,
        cast(answer_stamp as {{ dbt.type_timestamp() }}) as answered_at,
        cast(end_stamp as {{ dbt.type_timestamp() }}) as ended_at,
        answer_stamp is not null as is_answered,
        cast(duration as {{ dbt.type_bigint() }}) as duration_seconds,
        cast(billusec as {{ dbt.type_bigint() }}) as billed_microseconds,
        {{ tenios_exact_decimal('cost') }} as cost,
        cast(prepaid as {{ dbt.type_boolean() }}) as is_prepaid,
        cast(hangup_cause as {{ dbt.type_string() }}) as hangup_cause,
        cast(callerid_number as {{ dbt.type_string() }}) as caller_number,
        cast(callerid_name as {{ dbt.type_string() }}) as caller_name,
        cast(destination_number as {{ dbt.type_string() }}) as destination_number,
        cast(source_type as {{ dbt.type_string() }}) as source_type,
        cast(routing_status as {{ dbt.type_string() }}) as routing_status,
        cast(billing_status as {{ dbt.type_string() }}) as billing_status,
        cast(copies_loaded as {{ dbt.type_int() }}) as copies_loaded
    from ranked
    where copy_rank = 1

)

select
    typed.*,
    {{ tenios_hangup_category('hangup_cause') }} as hangup_category,
    {{ tenios_seconds_between('started_at', 'coalesce(answered_at, ended_at)') }} as ring_seconds,
    -- Connected time, from the billed microseconds: `duration` also holds set-up and ring.
    {{ tenios_round("billed_microseconds / 1000000.0", 3) }} as talk_seconds,
    {{ tenios_utc_to_local('started_at') }} as started_at_local,
    cast({{ tenios_utc_to_local('started_at') }} as date) as start_date_local
from typed
