{# Generic tests this project needs, so that it has no package dependencies. #}

{# No two rows share the same values in `combination_of_columns`. #}
{% test tenios_unique_combination(model, combination_of_columns) %}
  select {{ combination_of_columns | join(', ') }}, count(*) as occurrences
  from {{ model }}
  group by {{ combination_of_columns | join(', ') }}
  having count(*) > 1
{% endtest %}

{# Every value lies in [min_value, max_value] (either bound optional); nulls pass. #}
{% test tenios_between(model, column_name, min_value=none, max_value=none) %}
  select {{ column_name }}
  from {{ model }}
  where {{ column_name }} is not null
    and (
      false
      {% if min_value is not none %} or {{ column_name }} < {{ min_value }} {% endif %}
      {% if max_value is not none %} or {{ column_name }} > {{ max_value }} {% endif %}
    )
{% endtest %}

{# Every row satisfies a boolean SQL expression. #}
{% test tenios_expression_is_true(model, expression) %}
  select * from {{ model }} where not ({{ expression }})
{% endtest %}
