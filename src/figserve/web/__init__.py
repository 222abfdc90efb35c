"""HTTP layer: blueprints per area, request parsing and error responses."""
