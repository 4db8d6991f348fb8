"""The partitions of the project, defined once and imported everywhere: one per site."""

import dagster as dg

sites_partitions = dg.DynamicPartitionsDefinition(name="template_sites")
