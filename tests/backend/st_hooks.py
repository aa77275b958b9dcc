"""schemathesis hooks for tests/backend/test_openapi_conformance.py (SCHEMATHESIS_HOOKS)."""
