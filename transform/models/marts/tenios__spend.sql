-- Per account and local day: what every leg cost (inbound, forwarded, outbound, fax,
-- failed), by spend category, call type, service number (of the leg's call) and, for
-- legs leaving the platform, destination country and line type. Sums to the invoice.
-- Incremental: a run rebuilds the (account, local day) rows whose legs were rebuilt, the
-- days of every leg of a call rebuilt (a leg's call gets its service number when its
-- inbound leg arrives, maybe after its other legs, maybe the day before theirs), and
-- the days not yet extracted whole.
{{ tenios_incremental_config(['account', 'start_date_local'], [['account', 'start_month_local']]) }}
{%- set legs_of_calls -%}
    (
        select legs.account, legs.start_date_local, calls.built_at
        from {{ ref('tenios__calls') }} as calls
        inner join {{ ref('tenios__legs') }} as legs
            on legs.account = calls.account and legs.call_id = calls.call_id
    ) as legs_of_calls
{%- endset %}

with changed as (

    {{ tenios_changed_rows(
        ref('tenios__legs'), ['account', 'start_date_local'],
        parents=[ref('tenios__legs'), legs_of_calls], unsettled='not is_whole_day') | indent(4) }}

),

legs as (

    select
        changed.*,
        calls.service_number
    from changed
    left join {{ ref('tenios__calls') }} as calls
        on calls.account = changed.account and calls.call_id = changed.call_id

)

select
    spend.*,
    cast({{ dbt.date_trunc('month', 'spend.start_date_local') }} as date) as start_month_local,
    {{ tenios_built_at() }} as built_at
from (
    {{ tenios_spend('legs', [
        'account', 'start_date_local', 'spend_category', 'call_type', 'service_number',
        'destination_country_code', 'destination_country', 'destination_line_type',
    ]) | indent(4) }}
) as spend
