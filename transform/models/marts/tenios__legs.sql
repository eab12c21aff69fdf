-- One row per leg of every account: the newest copy loaded, with its role, how it ended
-- (seed tenios__hangup_causes), ring and talk time, local start and, for legs that
-- leave the platform, the destination's country and line type (seed
-- tenios__number_prefixes). Incremental: a run rebuilds, per account, the legs that
-- started within the lookback and settling period before that account's newest leg
-- already built (macro tenios_rebuild_bounds), and of those it writes only the legs
-- that are new or differ from the row built (a copy loaded again, billing settled):
-- the models after it rebuild what their stamp marks, so an hourly run that read a
-- day again but found it unchanged costs them nothing.
{{ tenios_incremental_config(
    ['account', 'leg_id'], [['account', 'started_at'], ['account', 'call_id'], ['account', 'start_date_local']]) }}
{%- set home = var('tenios_home_country_code') %}

with
{% if tenios_is_incremental() -%}
bounds as (
    {{ tenios_rebuild_bounds() | indent(4) }}
),

copies as (

    select copies.*
    from {{ ref('stg_tenios__cdr_legs') }} as copies
    left join bounds on bounds.account = copies.account
    where {{ tenios_within_rebuild('copies') }}

),
{%- else -%}
copies as (

    select * from {{ ref('stg_tenios__cdr_legs') }}

),
{%- endif %}

ranked as (

    select
        copies.*,
        row_number() over (partition by account, leg_id order by {{ tenios_newest_first() }})
            as copy_rank,
        count(*) over (partition by account, leg_id) as copies_loaded
    from copies

),

legs as (

    select * from ranked where copy_rank = 1

),

causes as (

    select * from {{ ref('tenios__hangup_causes') }}

),

-- Destinations dialled out of the platform, in international digits: "+49 30 ..." and
-- "0049..." lose their prefix, a national "030..." gets tenios_home_country_code.
numbers as (

    select
        destination_number,
        case
            when trim(destination_number) like '+%' then {{ tenios_digits('destination_number') }}
            when trim(destination_number) like '00%'
                then {{ dbt.right(tenios_digits('destination_number'), dbt.length(tenios_digits('destination_number')) ~ ' - 2') }}
            when trim(destination_number) like '0%'
                then {{ dbt.concat(["'" ~ home ~ "'", dbt.right(tenios_digits('destination_number'), dbt.length(tenios_digits('destination_number')) ~ ' - 1')]) }}
            else {{ tenios_digits('destination_number') }}
        end as digits
    from legs
    where leg_role <> 'inbound' and destination_number is not null
    group by destination_number

),

-- The longest prefix of the seed each number starts with (prefixes have 1 to 5 digits).
classified as (

    select
        numbers.destination_number,
        coalesce(p5.country_calling_code, p4.country_calling_code, p3.country_calling_code,
                 p2.country_calling_code, p1.country_calling_code) as country_calling_code,
        coalesce(p5.country, p4.country, p3.country, p2.country, p1.country) as country,
        coalesce(p5.line_type, p4.line_type, p3.line_type, p2.line_type, p1.line_type) as line_type
    from numbers
    {%- for length in range(1, 6) %}
    left join {{ ref('tenios__number_prefixes') }} as p{{ length }}
        on p{{ length }}.prefix = substr(numbers.digits, 1, {{ length }})
    {%- endfor %}

),

built as (

    select
        legs.account,
        legs.leg_id,
        legs.call_id,
        legs.main_leg_id,
        legs.bridged_leg_id,
        legs.call_type,
        legs.leg_role,
        case
            when legs.leg_role = 'inbound' then 'inbound'
            when legs.leg_role = 'forward' and legs.main_leg_id is not null then 'forwarded'
            when legs.leg_role = 'forward' then 'outbound'
            else legs.leg_role
        end as spend_category,
        legs.started_at,
        legs.answered_at,
        legs.ended_at,
        legs.answered_at is not null as is_answered,
        legs.duration_seconds,
        legs.billed_microseconds,
        legs.cost,
        legs.is_prepaid,
        legs.hangup_cause,
        case when legs.hangup_cause is not null then coalesce(causes.category, 'failure') end
            as hangup_category,
        case
            when legs.answered_at is not null then 'answer'
            when legs.hangup_cause is not null then coalesce(causes.ner_class, 'failure')
        end as ner_class,
        legs.routing_status is not null
            or (legs.answered_at is null and coalesce(causes.ner_class, 'failure') = 'failure')
            as is_failed,
        legs.caller_number,
        legs.caller_name,
        legs.destination_number,
        case
            when legs.leg_role = 'inbound' then null
            when legs.call_type in ('SIPFORWARD_USER', 'SIPFORWARD_PRFL') then 'sip'
            else coalesce(classified.line_type, 'unknown')
        end as destination_line_type,
        case
            when legs.leg_role <> 'inbound'
                and legs.call_type not in ('SIPFORWARD_USER', 'SIPFORWARD_PRFL')
                then classified.country_calling_code
        end as destination_country_code,
        case
            when legs.leg_role <> 'inbound'
                and legs.call_type not in ('SIPFORWARD_USER', 'SIPFORWARD_PRFL')
                then classified.country
        end as destination_country,
        legs.source_type,
        legs.routing_status,
        legs.billing_status,
        cast(legs.copies_loaded as {{ dbt.type_int() }}) as copies_loaded,
        {{ tenios_seconds_between('legs.started_at', 'coalesce(legs.answered_at, legs.ended_at)') }}
            as ring_seconds,
        -- Connected time, from the billed microseconds: `duration` also holds set-up and ring.
        {{ tenios_round("legs.billed_microseconds / 1000000.0", 3) }} as talk_seconds,
        {{ tenios_utc_to_local('legs.started_at', account='legs.account') }} as started_at_local,
        cast({{ tenios_utc_to_local('legs.started_at', account='legs.account') }} as date) as start_date_local,
        {{ tenios_built_at() }} as built_at
    from legs
    left join causes on causes.hangup_cause = legs.hangup_cause
    -- (Inbound legs are left out above, not in this condition: a condition on the left
    -- side alone would keep DuckDB from a hash join.)
    left join classified on classified.destination_number = legs.destination_number


)

{% if tenios_is_incremental() -%}
{#- What a leg's row follows from: the loaded fields and its copies (the rest is derived
    from them, the seeds and the vars; a change there needs --full-refresh anyway). #}
{%- set compared = [
    'account', 'leg_id', 'call_id', 'main_leg_id', 'bridged_leg_id', 'call_type', 'started_at',
    'answered_at', 'ended_at', 'duration_seconds', 'billed_microseconds', 'cost', 'is_prepaid',
    'hangup_cause', 'caller_number', 'caller_name', 'destination_number', 'source_type',
    'routing_status', 'billing_status', 'copies_loaded',
] %}
select built.*
from built
inner join (
    select {{ compared | join(', ') }} from built
    except
    select {% for column in compared %}old.{{ column }}{% if not loop.last %}, {% endif %}{% endfor %}
    from {{ this }} as old
    left join bounds on bounds.account = old.account
    where {{ tenios_within_rebuild('old') }}
) as changed
    on changed.account = built.account and changed.leg_id = built.leg_id
{%- else -%}
select * from built
{%- endif %}
