{# Generic tests this project needs, so that it has no package dependencies. #}

{#
  A model's row rules, all in one test: its key is unique; columns are not null; take
  only the listed values; lie in [min_value, max_value] (either bound optional); rows
  satisfy boolean SQL expressions. Nulls pass every rule but not_null, as in dbt's own
  tests. One test per model rather than one per column, because the hourly build pays
  dbt's fixed cost per node (compiling, a round trip, recording the result: about a
  tenth of a second on two cores) whatever the rows, and a model's per-column tests
  were most of its nodes; here one pass over the rows checks every column rule.

  It returns one row per broken rule (`rule`, `subject`: the column, key or
  expression, `failing_rows`), so the failure says which rule broke and how often;
  `dbt test --store-failures` keeps them.

    data_tests:
      - tenios_rules:
          arguments:
            unique: [account, leg_id]
            not_null: [account, leg_id]
            accepted_values: {leg_role: [inbound, forward, fax, other]}
            between: {ring_seconds: {min_value: 0}}
            expressions: ["answered_at is null or answered_at >= started_at"]
#}
{% test tenios_rules(model, unique=none, not_null=[], accepted_values={}, between={}, expressions=[]) %}
  {%- set checks = [] -%}
  {%- for column in not_null -%}
    {%- do checks.append(('not_null', column, column ~ ' is null')) -%}
  {%- endfor -%}
  {%- for column, values in accepted_values.items() -%}
    {%- set quoted = [] -%}
    {%- for value in values -%}
      {%- do quoted.append("'" ~ value ~ "'" if value is string else value | string) -%}
    {%- endfor -%}
    {%- do checks.append(('accepted_values', column,
        column ~ ' is not null and ' ~ column ~ ' not in (' ~ quoted | join(', ') ~ ')')) -%}
  {%- endfor -%}
  {%- for column, bounds in between.items() -%}
    {%- set outside = [] -%}
    {%- if bounds.get('min_value') is not none %}{% do outside.append(column ~ ' < ' ~ bounds['min_value']) %}{% endif -%}
    {%- if bounds.get('max_value') is not none %}{% do outside.append(column ~ ' > ' ~ bounds['max_value']) %}{% endif -%}
    {%- do checks.append(('between', column,
        column ~ ' is not null and (' ~ outside | join(' or ') ~ ')')) -%}
  {%- endfor -%}
  {%- for expression in expressions -%}
    {%- do checks.append(('expression', expression, 'not (' ~ expression ~ ')')) -%}
  {%- endfor -%}

  {%- set branches = [] -%}
  {%- if checks %}
    {%- for rule, subject, breaks in checks -%}
      {%- set branch -%}
        select '{{ rule }}' as rule, '{{ subject | replace("'", "''") }}' as subject, broken_{{ loop.index }} as failing_rows
        from counted where broken_{{ loop.index }} > 0
      {%- endset -%}
      {%- do branches.append(branch) -%}
    {%- endfor -%}
  {%- endif -%}
  {%- if unique -%}
    {%- set branch -%}
      select 'unique' as rule, '{{ unique | join(", ") }}' as subject, count(*) as failing_rows
      from (
          select {{ unique | join(', ') }}
          from {{ model }}
          group by {{ unique | join(', ') }}
          having count(*) > 1
      ) as duplicated
      having count(*) > 0
    {%- endset -%}
    {%- do branches.append(branch) -%}
  {%- endif %}

  {% if checks -%}
  with counted as (
      select
          {%- for rule, subject, breaks in checks %}
          coalesce(sum(case when {{ breaks }} then 1 else 0 end), 0) as broken_{{ loop.index }}{% if not loop.last %},{% endif %}
          {%- endfor %}
      from {{ model }}
  )
  {% endif -%}
  {{ branches | join('\nunion all\n') }}
{% endtest %}
