"""Pydantic models of the OpenAI wire format, one module per endpoint family. Requests accept unknown
fields (SDKs add new ones faster than servers learn them); responses are documented in the OpenAPI
schema and built as plain dicts on the hot path."""
