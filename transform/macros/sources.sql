{#
  Several Tenios accounts: the var tenios_sources lists one schema per account (each
  loaded by its own tap-tenios plugin). These macros union a stream over them with an
  `account` column, as the well-known source packages union schemas; without the var,
  the one schema tenios_schema is read through source() as before.
#}

{#
  The accounts: [{schema, account, database, first_day, report_timezone}], from
  tenios_sources (a list, or the same as YAML text, e.g. from the environment's
  TENIOS_SOURCES) or tenios_schema. first_day (YYYY-MM-DD, the tap's start_date's local
  day) defaults to the var tenios_first_day; none: the account's first counted day.
  report_timezone: the zone of the account's reports (macro tenios_report_zones).
#}
{% macro tenios_accounts() -%}
  {%- set sources = var('tenios_sources') -%}
  {%- if sources is string -%}
    {%- set sources = fromyaml(sources) -%}
  {%- endif -%}
  {%- set accounts = [] -%}
  {%- for entry in (sources or [{'schema': var('tenios_schema')}]) -%}
    {%- do accounts.append({
        'schema': entry['schema'],
        'account': entry.get('account') or entry['schema'],
        'database': entry.get('database'),
        'first_day': (entry.get('first_day') or var('tenios_first_day') or none),
        'report_timezone': entry.get('report_timezone'),
    }) -%}
  {%- endfor -%}
  {{ return(accounts) }}
{%- endmacro %}


{#
  `select <columns>, '<account>' as account from <relation>` for each account, joined
  by UNION ALL. `columns` is a list of SQL expressions over the raw table (casts go
  here, so that accounts loaded with different column types union cleanly). The
  account in tenios_schema is read through source() (so unit tests can stand in for
  it); the others are the same table in their own schema.

  An entry may instead be a mapping {expression, needs, otherwise}: `expression` over
  the raw column `needs`, which a loader may not have written (personal data a stream
  map removed, e.g. callerid_number), and `otherwise`, what stands in for it when that
  account's table lacks the column (a typed null): so the models still build, and the
  figures that need it say they are unavailable. A table whose columns cannot be read
  (not built yet, a unit test's fixture) is taken to have them all.
#}
{% macro tenios_union_source(table_name, columns) -%}
  -- depends_on: {{ source('tenios', table_name) }}
  {%- set own = source('tenios', table_name) %}
  {%- for entry in tenios_accounts() %}
    {%- if entry['schema'] == var('tenios_schema') and entry['database'] is none %}
      {%- set relation = own %}
    {%- else %}
      {%- set relation = api.Relation.create(
          database=entry['database'] or own.database,
          schema=entry['schema'],
          identifier=own.identifier) %}
    {%- endif %}
    {%- set missing = tenios_missing_columns(
        relation, columns | selectattr('needs', 'defined') | map(attribute='needs') | list) %}
    select
        cast('{{ entry["account"] }}' as {{ dbt.type_string() }}) as account,
        {%- for column in columns %}
        {%- if column is mapping %}
        {{ column['otherwise'] if column['needs'] in missing else column['expression'] }}
        {%- else %}
        {{ column }}
        {%- endif %}{% if not loop.last %},{% endif %}
        {%- endfor %}
    from {{ relation }}
    {% if not loop.last %}union all{% endif %}
  {%- endfor %}
{%- endmacro %}


{#
  Which of `wanted` (raw column names) the table `relation` lacks: none unless dbt is
  executing and the table exists with columns (its names compared case-insensitively,
  as loaders differ in case).
#}
{% macro tenios_missing_columns(relation, wanted) -%}
  {%- set missing = [] %}
  {%- if tenios_reads_the_warehouse() and wanted and relation is not string and relation.identifier %}
    {%- set found = adapter.get_columns_in_relation(relation) %}
    {%- if found %}
      {%- set names = found | map(attribute='name') | map('lower') | list %}
      {%- for column in wanted %}
        {%- if column | lower not in names %}{% do missing.append(column) %}{% endif %}
      {%- endfor %}
    {%- endif %}
  {%- endif %}
  {{ return(missing) }}
{%- endmacro %}


{#
  Each account's report zone, the zone of its local days, hours and months: the
  `report_timezone` of its tenios_sources entry, else the var tenios_report_timezone
  (or TENIOS_REPORT_TIMEZONE) when set, else the zone the account's cdr_counts were
  last counted in (the tap's `timezone`, so that days and months match the invoice),
  else UTC. {account: zone}, and '' for an account not listed.
#}
{% macro tenios_report_zones() -%}
  {%- set default = var('tenios_report_timezone') or none %}
  {%- set zones = {'': default or 'UTC'} %}
  {%- for entry in tenios_accounts() %}
    {%- do zones.update({entry['account']: (
        entry.get('report_timezone') or default or tenios_counted_zone(entry) or 'UTC')}) %}
  {%- endfor %}
  {{ return(zones) }}
{%- endmacro %}


{# The zone of an account's latest cdr_counts row; none before dbt executes, offline, or
   before the table exists. #}
{% macro tenios_counted_zone(entry) -%}
  {%- set zone = none %}
  {%- if tenios_reads_the_warehouse() %}
    {%- set relation = adapter.get_relation(
        database=entry['database'] or target.database,
        schema=entry['schema'],
        identifier=var('tenios_cdr_counts_identifier')) %}
    {%- if relation is not none %}
      {%- set found = run_query(
          'select timezone from ' ~ relation ~ ' where timezone is not null'
          ~ ' order by date desc limit 1') %}
      {%- if found and found.rows | length > 0 %}
        {%- set zone = found.rows[0][0] %}
      {%- endif %}
    {%- endif %}
  {%- endif %}
  {{ return(zone) }}
{%- endmacro %}


{# The report zone of the row's account (`account`, an SQL expression) as SQL: a
   literal when every account has the same, else a CASE over the accounts. #}
{% macro tenios_report_zone(account='account') -%}
  {%- set zones = tenios_report_zones() %}
  {%- set distinct = zones.values() | unique | list %}
  {%- if distinct | length == 1 -%}
    '{{ distinct[0] }}'
  {%- else -%}
    (case {{ account }}
        {%- for name, zone in zones.items() if name %} when '{{ name }}' then '{{ zone }}'{% endfor %}
        else '{{ zones[''] }}' end)
  {%- endif %}
{%- endmacro %}


{# Whether macros may look at the warehouse's tables (columns, the counts' zone): when
   dbt executes, and not when tenios_incremental_mode asks for an offline compile. #}
{% macro tenios_reads_the_warehouse() -%}
  {{ return(execute and var('tenios_incremental_mode') is none) }}
{%- endmacro %}
