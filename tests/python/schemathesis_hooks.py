"""Loaded by schemathesis (SCHEMATHESIS_HOOKS) in test_openapi.py: CSV
request bodies (`POST /v1/suppressions/import`) are text."""

import schemathesis

schemathesis.serializer.alias("text/csv", "text/plain")
