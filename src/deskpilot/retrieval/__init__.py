"""Similar-ticket and knowledge-base retrieval: dense (faiss) and lexical (BM25), fused, per tenant."""
