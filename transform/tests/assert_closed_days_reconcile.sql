-- Fails with the days, closed for tenios_settle_hours, whose loaded legs differ from the
-- API's own count: a lost or duplicated CDR.
select *
from {{ ref('tenios__cdr_reconciliation') }}
where is_closed and difference <> 0
