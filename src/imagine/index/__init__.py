"""Remember and find: multimodal indexes over a person's files, cited answers, and memory.

`Index(name)` (or `client.index(name)`) adds files, searches them and answers with citations
(`index.ask(...)`); `Memory` keeps summaries of past turns for `ask --memory` / `chat --memory`.
"""

from .index import AddReport, Index, IndexConfig, index_names
from .store import Chunk, ChunkStore, Hit, SourceRecord

__all__ = ["AddReport", "Chunk", "ChunkStore", "Hit", "Index", "IndexConfig", "SourceRecord", "index_names"]
