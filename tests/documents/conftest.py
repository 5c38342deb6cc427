from tests.retrieval.conftest import _no_default_embedding, chroma  # noqa: F401
