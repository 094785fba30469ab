"""API engines, one file per engine id (openai, anthropic, gemini); `_cloud` holds what they share
(keys, endpoints, retries, the provider model list), `_catalog` the models.dev capabilities and prices."""
