-- Fails with the service numbers whose opening hours are given in more than one time
-- zone (or for one account and for every account at once): each call must find one
-- schedule.
select service_number, count(distinct timezone) as zones,
       count(distinct coalesce(nullif(trim(cast(account as {{ dbt.type_string() }})), ''), '*')) as accounts
from {{ ref(var('tenios_opening_hours')) }}
group by service_number
having count(distinct timezone) > 1
    or (count(distinct coalesce(nullif(trim(cast(account as {{ dbt.type_string() }})), ''), '*')) > 1
        and min(coalesce(nullif(trim(cast(account as {{ dbt.type_string() }})), ''), '*')) = '*')
