{#
  Generic data tests on an incremental model, in a `dbt build` that rebuilt it, check
  the rows of the keys this run rebuilt (every row sharing a unique_key value with a
  row stamped by this run: all of a rebuilt day's rows, say), not the model's whole
  history: the rows of other keys were not touched, and passed when they were built. So
  the hourly build's tests cost what its models do. `dbt test`, a full refresh (every
  row is rebuilt) and the var tenios_test_everything: true check every row. A leg lost
  outside the rebuilt keys is the tie-out's to find (assert_marts_tie_to_the_loaded_legs).

  dbt's get_where_subquery (the generic tests' `where` config), overridden here: a
  `where` config still applies, on top.
#}
{% macro get_where_subquery(relation) -%}
  {%- set where = config.get('where', '') -%}
  {%- set scope = tenios_rebuilt_keys_filter(relation) -%}
  {%- set conditions = [] -%}
  {%- if where %}{% do conditions.append('(' ~ where ~ ')') %}{% endif -%}
  {%- if scope %}{% do conditions.append(scope) %}{% endif -%}
  {%- if conditions -%}
    {%- set filtered -%}
      (select * from {{ relation }} where {{ conditions | join(' and ') }}) dbt_subquery
    {%- endset -%}
    {% do return(filtered) %}
  {%- else -%}
    {% do return(relation) %}
  {%- endif -%}
{%- endmacro %}


{# The condition "this row's unique key was rebuilt by this run", or none. #}
{% macro tenios_rebuilt_keys_filter(relation) -%}
  {%- if not execute or flags.WHICH != 'build' or flags.FULL_REFRESH
        or var('tenios_test_everything', false) -%}
    {{ return(none) }}
  {%- endif -%}
  {%- for unique_id in model.depends_on.nodes -%}
    {%- set node = graph.nodes.get(unique_id) -%}
    {%- if node and node.resource_type == 'model'
          and node.config.materialized == 'incremental'
          and (node.alias or node.name) == relation.identifier
          and unique_id in selected_resources -%}
      {%- set keys = node.config.unique_key -%}
      {%- set keys = [keys] if keys is string else keys -%}
      {{ return('(' ~ keys | join(', ') ~ ') in (select ' ~ keys | join(', ') ~ ' from '
          ~ relation ~ ' where built_at = ' ~ tenios_built_at() ~ ')') }}
    {%- endif -%}
  {%- endfor -%}
  {{ return(none) }}
{%- endmacro %}
