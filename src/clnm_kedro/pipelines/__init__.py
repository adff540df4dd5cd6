"""The project's Kedro pipelines, one folder each (registered by name)."""
