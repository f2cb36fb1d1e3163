"""Configuration: the schema (frozen dataclasses), the sets of allowed values, loading and validation."""
