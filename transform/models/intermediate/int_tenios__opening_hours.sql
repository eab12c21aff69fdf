-- The opening hours (var tenios_opening_hours: the seed tenios__opening_hours by
-- default), with times as minutes since local midnight. A blank account means every
-- account. Ephemeral.
select
    nullif(trim(cast(account as {{ dbt.type_string() }})), '') as account,
    cast(service_number as {{ dbt.type_string() }}) as service_number,
    cast(weekday as {{ dbt.type_int() }}) as weekday,
    cast(substr(opens_at, 1, 2) as {{ dbt.type_int() }}) * 60
        + cast(substr(opens_at, 4, 2) as {{ dbt.type_int() }}) as opens_minute,
    cast(substr(closes_at, 1, 2) as {{ dbt.type_int() }}) * 60
        + cast(substr(closes_at, 4, 2) as {{ dbt.type_int() }}) as closes_minute,
    cast(timezone as {{ dbt.type_string() }}) as timezone
from {{ ref(var('tenios_opening_hours')) }}
