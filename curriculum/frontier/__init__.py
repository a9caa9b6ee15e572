"""The frontier backend: analysis, generation and judging by models behind an OpenAI-compatible API."""
