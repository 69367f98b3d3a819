"""Real recorded feed responses bundled for the offline demo (see tests/fixtures/feeds/SOURCES.md)."""
